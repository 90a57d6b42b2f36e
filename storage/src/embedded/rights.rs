//! Data rights, retention and checks on redb.

use async_trait::async_trait;
use redb::{ReadableTable, TableHandle, WriteTransaction};

use super::automod::AUTOMOD_HITS;
use super::moderation::CASES;
use super::records::{
    StoredPromo, account_expiry, ticket_expiry, user_refs, write_subscription, write_workflow,
};
use super::workflow_data::{WORKFLOW_RUNS, WORKFLOW_VARIABLES};
use super::{
    ACCOUNTS, ASSIGNMENTS, AUDIT, CHECKPOINTS, CLUSTER_META, CONFIG_HISTORY, EXPIRY, EmbeddedStore,
    GUILD_CONFIG, GUILD_DEPARTURES, LEADER_ANNOUNCEMENT, LEASES, NODES, PROMOS, REDEMPTIONS,
    RESHARDINGS, RowRef, SUBSCRIPTIONS, TICKETS, TRANSCRIPTS, USAGE, USER_REFS, WORKFLOWS,
    audit_ref, audit_users, e, from_json, index, open, open_read, remove_usage_day, to_json,
    unindex, usage_days, usage_expiry,
};
use crate::automod::{hit_expiry, hit_ref};
use crate::moderation::{case_ref, case_users};
use crate::timers::timer_ref;
use crate::workflows::{run_expiry, run_ref, variable_expiry, variable_ref};
use crate::{
    Account, AuditEntry, BackfillProgress, BackfillTable, Case, DataRights, Redemption, Retention,
    StorageError, StoredRow, Subscription, Ticket, Timer, TimerExport, Timestamp,
    TranscriptMessage, UserExport, WebSessionExport, Workflow,
};

/// How many expired rows one sweep transaction removes: bounds the time the writer lock is
/// held, so config saves are never stuck behind a long purge.
const SWEEP_BATCH: usize = 2_000;

fn take<T: serde::de::DeserializeOwned>(
    removed: Option<redb::AccessGuard<'_, &'static [u8]>>,
    name: &str,
) -> Result<Option<T>, StorageError> {
    removed.map(|v| from_json(name, v.value())).transpose()
}

/// Removes one row and its index entries; returns how many rows went (a ticket takes its
/// transcript with it).
pub(super) fn remove_row(
    txn: &WriteTransaction,
    row: &RowRef,
    retention: &Retention,
) -> Result<u64, StorageError> {
    match row {
        RowRef::Audit { guild, at, id } => {
            let old: Option<AuditEntry> = take(
                open(txn, AUDIT)?.remove((*guild, *at, *id)).map_err(e)?,
                "audit_log",
            )?;
            let Some(old) = old else { return Ok(0) };
            let expires = old.at.saturating_add(retention.audit);
            unindex(txn, &audit_ref(&old), &audit_users(&old), Some(expires))?;
            Ok(1)
        }
        RowRef::Ticket { guild, ticket } => {
            let old: Option<Ticket> = take(
                open(txn, TICKETS)?.remove((*guild, *ticket)).map_err(e)?,
                "tickets",
            )?;
            let Some(old) = old else { return Ok(0) };
            let expires = Some(ticket_expiry(old.opened_at, retention));
            unindex(txn, row, &[old.opener_id], expires)?;
            let messages: Vec<(u64, Vec<u64>)> = {
                let mut table = open(txn, TRANSCRIPTS)?;
                let removed = table
                    .extract_from_if(
                        (*guild, *ticket, 0)..=(*guild, *ticket, u64::MAX),
                        |_, _| true,
                    )
                    .map_err(e)?;
                let mut out = Vec::new();
                for item in removed {
                    let (key, value) = item.map_err(e)?;
                    let message: TranscriptMessage = from_json("transcripts", value.value())?;
                    out.push((key.value().2, message.users()));
                }
                out
            };
            for (message, users) in &messages {
                let row = RowRef::Transcript {
                    guild: *guild,
                    ticket: *ticket,
                    message: *message,
                };
                unindex(txn, &row, users, expires)?;
            }
            Ok(1 + messages.len() as u64)
        }
        RowRef::Transcript {
            guild,
            ticket,
            message,
        } => {
            let old: Option<TranscriptMessage> = take(
                open(txn, TRANSCRIPTS)?
                    .remove((*guild, *ticket, *message))
                    .map_err(e)?,
                "transcripts",
            )?;
            let Some(old) = old else { return Ok(0) };
            let opened: Option<Ticket> = {
                let table = open(txn, TICKETS)?;
                let row = table.get((*guild, *ticket)).map_err(e)?;
                row.map(|v| from_json("tickets", v.value())).transpose()?
            };
            // Without its ticket the expiry entry is unknown; the sweeper drops it when due.
            let expires = opened.map(|t| ticket_expiry(t.opened_at, retention));
            unindex(txn, row, &old.users(), expires)?;
            Ok(1)
        }
        RowRef::Workflow { guild, workflow } => {
            let old: Option<Workflow> = take(
                open(txn, WORKFLOWS)?
                    .remove((*guild, *workflow))
                    .map_err(e)?,
                "workflows",
            )?;
            let Some(old) = old else { return Ok(0) };
            unindex(txn, row, old.created_by.as_slice(), None)?;
            Ok(1)
        }
        RowRef::Subscription { id } => {
            let old: Option<Subscription> = take(
                open(txn, SUBSCRIPTIONS)?.remove(*id).map_err(e)?,
                "subscriptions",
            )?;
            let Some(old) = old else { return Ok(0) };
            unindex(txn, row, &[old.user_id], None)?;
            Ok(1)
        }
        RowRef::Redemption { code, user } => {
            let old: Option<Redemption> = take(
                open(txn, REDEMPTIONS)?
                    .remove((code.as_str(), *user))
                    .map_err(e)?,
                "promo_redemptions",
            )?;
            let Some(_) = old else { return Ok(0) };
            unindex(txn, row, &[*user], None)?;
            Ok(1)
        }
        RowRef::Account { user } => {
            let old: Option<Account> =
                take(open(txn, ACCOUNTS)?.remove(*user).map_err(e)?, "accounts")?;
            let Some(old) = old else { return Ok(0) };
            unindex(txn, row, &[], Some(account_expiry(&old, retention)))?;
            Ok(1)
        }
        RowRef::UsageDay { guild, day } => {
            let removed = remove_usage_day(txn, *guild, *day)?;
            unindex(txn, row, &[], Some(usage_expiry(*day, retention)))?;
            Ok(removed)
        }
        // Past their retention (the sweeper). Never for one user: they protect the server's
        // members, so `delete_user` anonymises them instead.
        RowRef::Case { guild, number } => Ok(u64::from(super::moderation::remove_case(
            txn, *guild, *number, retention,
        )?)),
        RowRef::AutomodHit {
            guild,
            message,
            rule,
        } => Ok(u64::from(super::automod::remove_hit(
            txn, *guild, *message, rule,
        )?)),
        RowRef::Timer { guild, id } => match super::timers::stored(txn, *guild, id)? {
            Some(timer) => super::timers::remove(txn, &timer).map(|()| 1),
            None => Ok(0),
        },
        RowRef::InboxEvent { id } => {
            Ok(u64::from(super::premium::remove_event(txn, id, retention)?))
        }
        RowRef::WorkflowVariable { guild, user, name } => Ok(u64::from(
            super::workflow_data::remove_variable(txn, *guild, *user, name, retention)?,
        )),
        RowRef::WorkflowRun {
            guild,
            workflow,
            slot,
        } => Ok(u64::from(super::workflow_data::remove_run(
            txn, *guild, *workflow, *slot, retention,
        )?)),
        RowRef::AnnouncementDm {
            campaign,
            shard,
            user,
        } => Ok(u64::from(super::announcements::remove_dm_delivery(
            txn,
            (*campaign, *shard, *user),
        )?)),
    }
}

/// `user_id` 0 holds what erasures anonymised: erasing it would erase everyone's.
fn refuse_erased_user(user_id: u64) -> Result<(), StorageError> {
    if user_id == crate::privacy::ERASED_USER {
        return Err(StorageError::Invalid(
            "user 0 holds the anonymised records of erased users".into(),
        ));
    }
    Ok(())
}

/// One row, read inside a write transaction.
fn read_in<T: serde::de::DeserializeOwned, K: redb::Key + 'static>(
    txn: &WriteTransaction,
    table: redb::TableDefinition<K, &'static [u8]>,
    key: K::SelfType<'_>,
) -> Result<Option<T>, StorageError> {
    let table = open(txn, table)?;
    let row = table.get(key).map_err(e)?;
    row.map(|v| from_json(table.name(), v.value())).transpose()
}

fn read_row<T: serde::de::DeserializeOwned, K: redb::Key + 'static>(
    txn: &redb::ReadTransaction,
    table: redb::TableDefinition<K, &'static [u8]>,
    key: K::SelfType<'_>,
) -> Result<Option<T>, StorageError> {
    let table = open_read(txn, table)?;
    let row = table.get(key).map_err(e)?;
    row.map(|v| from_json(table.name(), v.value())).transpose()
}

#[async_trait]
impl DataRights for EmbeddedStore {
    async fn export_user(&self, user_id: u64) -> Result<UserExport, StorageError> {
        self.read(move |txn, _| {
            let mut export = UserExport {
                user_id,
                account: read_row(txn, ACCOUNTS, user_id)?,
                ..UserExport::default()
            };
            for row in user_refs(&open_read(txn, USER_REFS)?, user_id)? {
                match row {
                    RowRef::Audit { guild, at, id } => {
                        export.audit.extend(read_row(txn, AUDIT, (guild, at, id))?);
                    }
                    RowRef::Ticket { guild, ticket } => {
                        export
                            .tickets
                            .extend(read_row(txn, TICKETS, (guild, ticket))?);
                    }
                    RowRef::Transcript {
                        guild,
                        ticket,
                        message,
                    } => export.transcript_messages.extend(read_row(
                        txn,
                        TRANSCRIPTS,
                        (guild, ticket, message),
                    )?),
                    RowRef::Workflow { guild, workflow } => {
                        export
                            .workflows
                            .extend(read_row(txn, WORKFLOWS, (guild, workflow))?);
                    }
                    RowRef::Subscription { id } => {
                        export
                            .subscriptions
                            .extend(read_row(txn, SUBSCRIPTIONS, id)?);
                    }
                    RowRef::Redemption { code, user } => {
                        export.redemptions.extend(read_row(
                            txn,
                            REDEMPTIONS,
                            (code.as_str(), user),
                        )?);
                    }
                    RowRef::Account { .. } | RowRef::UsageDay { .. } => {}
                    RowRef::Case { guild, number } => {
                        export.cases.extend(read_row(txn, CASES, (guild, number))?);
                    }
                    RowRef::AutomodHit {
                        guild,
                        message,
                        rule,
                    } => export.automod_hits.extend(read_row(
                        txn,
                        AUTOMOD_HITS,
                        (guild, message, rule.as_str()),
                    )?),
                    RowRef::Timer { guild, id } => {
                        let timer = super::timers::stored_in(txn, guild, &id)?;
                        export.timers.extend(timer.as_ref().map(TimerExport::from));
                    }
                    RowRef::InboxEvent { id } => {
                        let inbox = super::premium::INBOX;
                        export
                            .billing_events
                            .extend(read_row(txn, inbox, id.as_str())?);
                    }
                    RowRef::WorkflowVariable { guild, user, name } => {
                        export.workflow_variables.extend(read_row(
                            txn,
                            WORKFLOW_VARIABLES,
                            (guild, user, name.as_str()),
                        )?)
                    }
                    RowRef::WorkflowRun {
                        guild,
                        workflow,
                        slot,
                    } => export.workflow_runs.extend(read_row(
                        txn,
                        WORKFLOW_RUNS,
                        (guild, workflow, slot),
                    )?),
                    RowRef::AnnouncementDm {
                        campaign,
                        shard,
                        user,
                    } => export.announcement_dms.extend(read_row(
                        txn,
                        super::announcements::DM_DELIVERIES,
                        (campaign, shard, user),
                    )?),
                }
            }
            export.web_sessions = super::web_sessions::stored_of(txn, user_id)?
                .iter()
                .map(WebSessionExport::from)
                .collect();
            (export.privacy_requests, export.privacy_flags) =
                super::privacy::export_of(txn, user_id)?;
            export.privacy_flag_changes = super::privacy::flag_changes_of(txn, user_id)?;
            export.premium_slots = super::premium::slots_of(txn, user_id)?;
            Ok(export)
        })
        .await
    }

    async fn delete_user(&self, user_id: u64) -> Result<u64, StorageError> {
        refuse_erased_user(user_id)?;
        self.write(move |txn, retention| {
            let refs = user_refs(&open(txn, USER_REFS)?, user_id)?;
            let mut touched = remove_row(txn, &RowRef::Account { user: user_id }, retention)?;
            touched += super::web_sessions::remove_all_of(txn, user_id)?;
            touched += super::premium::remove_slots_of(txn, user_id)?;
            touched += super::privacy::erase_user(txn, user_id)?;
            for row in refs {
                touched += match &row {
                    // The guild keeps its automation; only the author goes.
                    RowRef::Workflow { guild, workflow } => {
                        let current: Option<Workflow> = {
                            let table = open(txn, WORKFLOWS)?;
                            let row = table.get((*guild, *workflow)).map_err(e)?;
                            row.map(|v| from_json("workflows", v.value())).transpose()?
                        };
                        match current {
                            Some(workflow) => {
                                write_workflow(
                                    txn,
                                    &Workflow {
                                        created_by: None,
                                        ..workflow
                                    },
                                )?;
                                1
                            }
                            None => 0,
                        }
                    }
                    // Security audit and billing records stay, without the user.
                    RowRef::Audit { guild, at, id } => {
                        let current: Option<AuditEntry> = read_in(txn, AUDIT, (*guild, *at, *id))?;
                        match current {
                            Some(entry) => {
                                remove_row(txn, &row, retention)?;
                                let kept = crate::privacy::anonymised_audit(entry, user_id);
                                open(txn, AUDIT)?
                                    .insert((*guild, *at, *id), to_json(&kept).as_slice())
                                    .map_err(e)?;
                                let expires = kept.at.saturating_add(retention.audit);
                                index(txn, &row, &audit_users(&kept), Some(expires))?;
                                1
                            }
                            None => 0,
                        }
                    }
                    RowRef::Subscription { id } => {
                        let current: Option<Subscription> = read_in(txn, SUBSCRIPTIONS, *id)?;
                        match current {
                            Some(subscription) => {
                                remove_row(txn, &row, retention)?;
                                write_subscription(
                                    txn,
                                    &crate::privacy::anonymised_subscription(subscription),
                                )?;
                                1
                            }
                            None => 0,
                        }
                    }
                    // Moderation cases stay, without the user.
                    RowRef::Case { guild, number } => u64::from(super::moderation::anonymise_case(
                        txn, *guild, *number, user_id,
                    )?),
                    // A timer that undoes something done to the user (a temporary ban's
                    // unban) stays, no longer naming them, until it has run.
                    RowRef::Timer { guild, id } => {
                        u64::from(super::timers::erase_user(txn, *guild, id, user_id)?)
                    }
                    // Kept for its id (a redelivery stays a duplicate), without body or user.
                    RowRef::InboxEvent { id } => {
                        u64::from(super::premium::erase_event_user(txn, id, retention)?)
                    }
                    // Their own line goes; another's that mentions them stays, without them.
                    RowRef::Transcript {
                        guild,
                        ticket,
                        message,
                    } => {
                        let key = (*guild, *ticket, *message);
                        match read_in::<TranscriptMessage, _>(txn, TRANSCRIPTS, key)? {
                            Some(line) if line.author_id != user_id => {
                                let kept = line.without_mentions_of(user_id);
                                open(txn, TRANSCRIPTS)?
                                    .insert(key, to_json(&kept).as_slice())
                                    .map_err(e)?;
                                1
                            }
                            Some(_) => remove_row(txn, &row, retention)?,
                            None => 0,
                        }
                    }
                    other => remove_row(txn, other, retention)?,
                };
                // A ref whose row was already gone (a ticket's transcript removed with it).
                open(txn, USER_REFS)?
                    .remove((user_id, row.bytes().as_slice()))
                    .map_err(e)?;
            }
            Ok(touched)
        })
        .await
    }

    async fn delete_guild(&self, guild_id: u64) -> Result<u64, StorageError> {
        self.write(move |txn, retention| {
            let mut touched = 0;
            if open(txn, GUILD_DEPARTURES)?
                .remove(guild_id)
                .map_err(e)?
                .is_some()
            {
                touched += 1;
            }
            if open(txn, GUILD_CONFIG)?
                .remove(guild_id)
                .map_err(e)?
                .is_some()
            {
                touched += 1;
            }
            touched += super::moderation::delete_guild_cases(txn, guild_id, retention)?;
            touched += super::automod::delete_guild_hits(txn, guild_id)?;
            touched += super::workflow_data::delete_guild_data(txn, guild_id, retention)?;
            touched += super::timers::delete_guild_timers(txn, guild_id)?;
            touched += super::announcements::delete_guild_schedules(txn, guild_id)?;
            {
                let mut table = open(txn, CONFIG_HISTORY)?;
                let removed = table
                    .extract_from_if((guild_id, 0)..=(guild_id, u64::MAX), |_, _| true)
                    .map_err(e)?;
                touched += removed.count() as u64;
            }
            let days = usage_days(&open(txn, USAGE)?, guild_id)?;
            for day in days {
                touched += remove_row(
                    txn,
                    &RowRef::UsageDay {
                        guild: guild_id,
                        day,
                    },
                    retention,
                )?;
            }
            let mut rows = Vec::new();
            for item in open(txn, AUDIT)?
                .range((guild_id, 0, 0)..=(guild_id, u64::MAX, u64::MAX))
                .map_err(e)?
            {
                let (at, id) = {
                    let (key, _) = item.map_err(e)?;
                    let (_, at, id) = key.value();
                    (at, id)
                };
                rows.push(RowRef::Audit {
                    guild: guild_id,
                    at,
                    id,
                });
            }
            for item in open(txn, TICKETS)?
                .range((guild_id, 0)..=(guild_id, u64::MAX))
                .map_err(e)?
            {
                let ticket = item.map_err(e)?.0.value().1;
                rows.push(RowRef::Ticket {
                    guild: guild_id,
                    ticket,
                });
            }
            // Messages whose ticket is already gone would be orphans; remove them too.
            for item in open(txn, TRANSCRIPTS)?
                .range((guild_id, 0, 0)..=(guild_id, u64::MAX, u64::MAX))
                .map_err(e)?
            {
                let (_, ticket, message) = item.map_err(e)?.0.value();
                rows.push(RowRef::Transcript {
                    guild: guild_id,
                    ticket,
                    message,
                });
            }
            for item in open(txn, WORKFLOWS)?
                .range((guild_id, 0)..=(guild_id, u64::MAX))
                .map_err(e)?
            {
                let workflow = item.map_err(e)?.0.value().1;
                rows.push(RowRef::Workflow {
                    guild: guild_id,
                    workflow,
                });
            }
            for item in open(txn, SUBSCRIPTIONS)?.iter().map_err(e)? {
                let (key, value) = item.map_err(e)?;
                let subscription: Subscription = from_json("subscriptions", value.value())?;
                if subscription.guild_id == Some(guild_id) {
                    rows.push(RowRef::Subscription { id: key.value() });
                }
            }
            for row in &rows {
                touched += remove_row(txn, row, retention)?;
            }
            touched += super::premium::remove_guild_slot(txn, guild_id)?;
            Ok(touched)
        })
        .await
    }

    async fn schedule_guild_deletion(
        &self,
        guild_id: u64,
        at: Timestamp,
    ) -> Result<(), StorageError> {
        self.write(move |txn, _| {
            open(txn, GUILD_DEPARTURES)?
                .insert(guild_id, at.0)
                .map_err(e)?;
            Ok(())
        })
        .await
    }

    async fn cancel_guild_deletion(&self, guild_id: u64) -> Result<bool, StorageError> {
        // Read first: a rejoin is common and a pending deletion rare, and a read costs no fsync.
        let pending = self
            .read(move |txn, _| {
                let table = open_read(txn, GUILD_DEPARTURES)?;
                Ok(table.get(guild_id).map_err(e)?.is_some())
            })
            .await?;
        if !pending {
            return Ok(false);
        }
        self.write(move |txn, _| {
            let mut table = open(txn, GUILD_DEPARTURES)?;
            let removed = table.remove(guild_id).map_err(e)?.is_some();
            Ok(removed)
        })
        .await
    }

    async fn stored_guilds(
        &self,
        shard_id: u32,
        shard_count: u32,
    ) -> Result<Vec<u64>, StorageError> {
        self.read(move |txn, _| {
            let mut out = Vec::new();
            for item in open_read(txn, GUILD_CONFIG)?.iter().map_err(e)? {
                let guild = item.map_err(e)?.0.value();
                if crate::on_shard(guild, shard_id, shard_count) {
                    out.push(guild);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn scheduled_guild_deletions(&self) -> Result<Vec<(u64, Timestamp)>, StorageError> {
        self.read(|txn, _| {
            let mut out = Vec::new();
            for item in open_read(txn, GUILD_DEPARTURES)?.iter().map_err(e)? {
                let (guild, at) = item.map_err(e)?;
                out.push((guild.value(), Timestamp(at.value())));
            }
            Ok(out)
        })
        .await
    }

    async fn sweep_expired(&self, now: Timestamp) -> Result<u64, StorageError> {
        let mut total = 0;
        for (guild_id, at) in self.scheduled_guild_deletions().await? {
            if at <= now {
                // One transaction: the guild's rows and its departure go together.
                total += self.delete_guild(guild_id).await?;
            }
        }
        total += self
            .write(move |txn, retention| super::privacy::sweep(txn, now, retention))
            .await?;
        total += self
            .write(move |txn, retention| super::announcements::sweep(txn, now, retention))
            .await?;
        loop {
            let (removed, more) = self
                .write(move |txn, retention| {
                    let due: Vec<(u64, Vec<u8>)> = {
                        let table = open(txn, EXPIRY)?;
                        let mut due = Vec::new();
                        for item in table
                            .range(..(now.0.saturating_add(1), &[][..]))
                            .map_err(e)?
                        {
                            let (key, _) = item.map_err(e)?;
                            let (at, row) = key.value();
                            if at > now.0 || due.len() == SWEEP_BATCH {
                                break;
                            }
                            due.push((at, row.to_vec()));
                        }
                        due
                    };
                    let mut removed = 0;
                    for (at, bytes) in &due {
                        let row = RowRef::parse(bytes)?;
                        removed += remove_row(txn, &row, retention)?;
                        open(txn, EXPIRY)?
                            .remove((*at, bytes.as_slice()))
                            .map_err(e)?;
                    }
                    Ok((removed, due.len() == SWEEP_BATCH))
                })
                .await?;
            total += removed;
            if !more {
                return Ok(total);
            }
        }
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
        self.read(move |txn, _| {
            let mut out = Vec::new();
            let mut push = |table: &str, text: String| {
                out.push(StoredRow {
                    table: table.to_owned(),
                    text,
                })
            };
            macro_rules! dump_json {
                ($def:expr) => {
                    let table = open_read(txn, $def)?;
                    for item in table.iter().map_err(e)? {
                        let (key, value) = item.map_err(e)?;
                        let text = String::from_utf8_lossy(value.value()).into_owned();
                        push($def.name(), format!("{:?} {}", key.value(), text));
                    }
                };
            }
            dump_json!(GUILD_CONFIG);
            dump_json!(CONFIG_HISTORY);
            dump_json!(AUDIT);
            dump_json!(ACCOUNTS);
            dump_json!(TICKETS);
            dump_json!(TRANSCRIPTS);
            dump_json!(WORKFLOWS);
            dump_json!(SUBSCRIPTIONS);
            dump_json!(PROMOS);
            dump_json!(REDEMPTIONS);
            dump_json!(NODES);
            dump_json!(ASSIGNMENTS);
            dump_json!(CHECKPOINTS);
            dump_json!(LEASES);
            dump_json!(LEADER_ANNOUNCEMENT);
            dump_json!(RESHARDINGS);
            dump_json!(super::web_sessions::WEB_SESSIONS);
            dump_json!(super::premium::SLOTS);
            dump_json!(super::premium::INBOX);
            dump_json!(CASES);
            dump_json!(AUTOMOD_HITS);
            dump_json!(super::timers::TIMERS);
            dump_json!(WORKFLOW_VARIABLES);
            dump_json!(WORKFLOW_RUNS);
            dump_json!(super::announcements::CAMPAIGNS);
            dump_json!(super::announcements::DELIVERIES);
            dump_json!(super::announcements::DM_DELIVERIES);
            dump_json!(super::announcements::SCHEDULES);
            dump_json!(super::backfill::BACKFILL);
            let by_user = super::web_sessions::WEB_SESSIONS_BY_USER;
            for item in open_read(txn, by_user)?.iter().map_err(e)? {
                let (key, _) = item.map_err(e)?;
                let (user, id) = key.value();
                push(by_user.name(), format!("{user} {id}"));
            }
            for item in open_read(txn, USAGE)?.iter().map_err(e)? {
                let (key, value) = item.map_err(e)?;
                push(USAGE.name(), format!("{:?} {}", key.value(), value.value()));
            }
            for item in open_read(txn, GUILD_DEPARTURES)?.iter().map_err(e)? {
                let (guild, at) = item.map_err(e)?;
                let text = format!("{} {}", guild.value(), at.value());
                push(GUILD_DEPARTURES.name(), text);
            }
            for item in open_read(txn, CLUSTER_META)?.iter().map_err(e)? {
                let (name, value) = item.map_err(e)?;
                push(
                    CLUSTER_META.name(),
                    format!("{} {}", name.value(), value.value()),
                );
            }
            for def in [USER_REFS, EXPIRY] {
                for item in open_read(txn, def)?.iter().map_err(e)? {
                    let (key, _) = item.map_err(e)?;
                    let (n, row) = key.value();
                    let row = RowRef::parse(row)?.json();
                    push(def.name(), format!("{n} {row}"));
                }
            }
            super::privacy::dump(txn, &mut out)?;
            Ok(out)
        })
        .await
    }
}

impl EmbeddedStore {
    /// Checks the store's invariants and lists every violation (empty when consistent):
    /// each config has its current version in the history, every row's index entries exist,
    /// and every index entry points at a row. Reads everything; for tests and `fsck`-style
    /// tooling after a crash.
    pub async fn check_consistency(&self) -> Result<Vec<String>, StorageError> {
        self.read(move |txn, retention| {
            let problems = std::cell::RefCell::new(Vec::new());
            let refs = open_read(txn, USER_REFS)?;
            let expiry = open_read(txn, EXPIRY)?;
            let expect = |row: &RowRef, users: &[u64], expires: Option<Timestamp>| {
                let bytes = row.bytes();
                for &user in users {
                    match refs.get((user, bytes.as_slice())) {
                        Ok(Some(_)) => {}
                        _ => problems
                            .borrow_mut()
                            .push(format!("{row:?} lacks its ref for user {user}")),
                    }
                }
                if let Some(at) = expires {
                    match expiry.get((at.0, bytes.as_slice())) {
                        Ok(Some(_)) => {}
                        _ => problems
                            .borrow_mut()
                            .push(format!("{row:?} lacks its expiry entry")),
                    }
                }
            };
            let history = open_read(txn, CONFIG_HISTORY)?;
            for item in open_read(txn, GUILD_CONFIG)?.iter().map_err(e)? {
                let (key, value) = item.map_err(e)?;
                let guild = key.value();
                let stored: crate::VersionedConfig = from_json("guild_config", value.value())?;
                let in_history = history.get((guild, stored.version)).map_err(e)?;
                let matches = in_history
                    .map(|v| from_json::<crate::GuildConfig>("history", v.value()))
                    .transpose()?
                    .is_some_and(|config| config == stored.config);
                if !matches {
                    problems.borrow_mut().push(format!(
                        "guild {guild} config v{} missing from history",
                        stored.version
                    ));
                }
            }
            for item in open_read(txn, AUDIT)?.iter().map_err(e)? {
                let entry: AuditEntry = from_json("audit_log", item.map_err(e)?.1.value())?;
                expect(
                    &audit_ref(&entry),
                    &audit_users(&entry),
                    Some(entry.at.saturating_add(retention.audit)),
                );
            }
            let mut opened = std::collections::HashMap::new();
            for item in open_read(txn, TICKETS)?.iter().map_err(e)? {
                let ticket: Ticket = from_json("tickets", item.map_err(e)?.1.value())?;
                let row = RowRef::Ticket {
                    guild: ticket.guild_id,
                    ticket: ticket.ticket_id,
                };
                let expires = ticket_expiry(ticket.opened_at, retention);
                opened.insert((ticket.guild_id, ticket.ticket_id), expires);
                expect(&row, &[ticket.opener_id], Some(expires));
            }
            for item in open_read(txn, TRANSCRIPTS)?.iter().map_err(e)? {
                let m: TranscriptMessage = from_json("transcripts", item.map_err(e)?.1.value())?;
                let row = RowRef::Transcript {
                    guild: m.guild_id,
                    ticket: m.ticket_id,
                    message: m.message_id,
                };
                match opened.get(&(m.guild_id, m.ticket_id)) {
                    Some(&expires) => expect(&row, &m.users(), Some(expires)),
                    None => problems.borrow_mut().push(format!("{row:?} has no ticket")),
                }
            }
            for item in open_read(txn, WORKFLOWS)?.iter().map_err(e)? {
                let w: Workflow = from_json("workflows", item.map_err(e)?.1.value())?;
                let row = RowRef::Workflow {
                    guild: w.guild_id,
                    workflow: w.workflow_id,
                };
                expect(&row, w.created_by.as_slice(), None);
            }
            for item in open_read(txn, SUBSCRIPTIONS)?.iter().map_err(e)? {
                let s: Subscription = from_json("subscriptions", item.map_err(e)?.1.value())?;
                expect(
                    &RowRef::Subscription {
                        id: s.subscription_id,
                    },
                    &[s.user_id],
                    None,
                );
            }
            let mut redeemed = std::collections::HashMap::<String, u32>::new();
            for item in open_read(txn, REDEMPTIONS)?.iter().map_err(e)? {
                let r: Redemption = from_json("promo_redemptions", item.map_err(e)?.1.value())?;
                *redeemed.entry(r.code.clone()).or_default() += 1;
                let row = RowRef::Redemption {
                    code: r.code,
                    user: r.user_id,
                };
                expect(&row, &[r.user_id], None);
            }
            for hit in super::automod::all_hits(txn)? {
                expect(&hit_ref(&hit), &[hit.user_id], Some(hit_expiry(&hit)));
            }
            let (variables, runs) = super::workflow_data::all(txn)?;
            for variable in &variables {
                let expires = variable_expiry(variable, retention);
                expect(
                    &variable_ref(variable),
                    variable.user_id.as_slice(),
                    Some(expires),
                );
            }
            for run in &runs {
                let expires = run_expiry(run, retention);
                expect(&run_ref(run), run.user_id.as_slice(), Some(expires));
            }
            for item in open_read(txn, CASES)?.iter().map_err(e)? {
                let case: Case = from_json("cases", item.map_err(e)?.1.value())?;
                let expires = Some(crate::moderation::case_expiry(&case, retention));
                expect(&case_ref(&case), &case_users(&case), expires);
            }
            for item in open_read(txn, super::premium::INBOX)?.iter().map_err(e)? {
                let event: crate::InboxEvent =
                    from_json("billing_inbox", item.map_err(e)?.1.value())?;
                let expires = event
                    .outcome
                    .is_some()
                    .then(|| crate::premium::event_expiry(&event, retention));
                let users: Vec<u64> = event.user_id.into_iter().collect();
                expect(&crate::premium::event_ref(&event), &users, expires);
            }
            for item in open_read(txn, super::timers::TIMERS)?.iter().map_err(e)? {
                let timer: Timer = from_json("timers", item.map_err(e)?.1.value())?;
                expect(&timer_ref(&timer), &timer.parties(), None);
            }
            for dm in super::announcements::all_dm_deliveries(txn)? {
                expect(&crate::announcements::dm_ref(&dm), &[dm.user_id], None);
            }
            for item in open_read(txn, ACCOUNTS)?.iter().map_err(e)? {
                let a: Account = from_json("accounts", item.map_err(e)?.1.value())?;
                expect(
                    &RowRef::Account { user: a.user_id },
                    &[],
                    Some(account_expiry(&a, retention)),
                );
            }
            let usage = open_read(txn, USAGE)?;
            let mut guilds: Vec<u64> = Vec::new();
            for item in usage.iter().map_err(e)? {
                let guild = item.map_err(e)?.0.value().0;
                if guilds.last() != Some(&guild) {
                    guilds.push(guild);
                }
            }
            for guild in guilds {
                for day in usage_days(&usage, guild)? {
                    let expires = usage_expiry(day, retention);
                    expect(&RowRef::UsageDay { guild, day }, &[], Some(expires));
                }
            }
            for item in open_read(txn, PROMOS)?.iter().map_err(e)? {
                let p: StoredPromo = from_json("promo_codes", item.map_err(e)?.1.value())?;
                let counted = redeemed.get(&p.promo.code).copied().unwrap_or(0);
                if counted > p.redeemed {
                    problems.borrow_mut().push(format!(
                        "promo {} counts {} redemptions but has {counted}",
                        p.promo.code, p.redeemed
                    ));
                }
            }
            // Every index entry must point at a row.
            let exists = |row: &RowRef| -> Result<bool, StorageError> {
                Ok(match row {
                    RowRef::Audit { guild, at, id } => open_read(txn, AUDIT)?
                        .get((*guild, *at, *id))
                        .map_err(e)?
                        .is_some(),
                    RowRef::Ticket { guild, ticket } => open_read(txn, TICKETS)?
                        .get((*guild, *ticket))
                        .map_err(e)?
                        .is_some(),
                    RowRef::Transcript {
                        guild,
                        ticket,
                        message,
                    } => open_read(txn, TRANSCRIPTS)?
                        .get((*guild, *ticket, *message))
                        .map_err(e)?
                        .is_some(),
                    RowRef::Workflow { guild, workflow } => open_read(txn, WORKFLOWS)?
                        .get((*guild, *workflow))
                        .map_err(e)?
                        .is_some(),
                    RowRef::Subscription { id } => open_read(txn, SUBSCRIPTIONS)?
                        .get(*id)
                        .map_err(e)?
                        .is_some(),
                    RowRef::Redemption { code, user } => open_read(txn, REDEMPTIONS)?
                        .get((code.as_str(), *user))
                        .map_err(e)?
                        .is_some(),
                    RowRef::Account { user } => {
                        open_read(txn, ACCOUNTS)?.get(*user).map_err(e)?.is_some()
                    }
                    RowRef::UsageDay { guild, day } => {
                        usage_days(&open_read(txn, USAGE)?, *guild)?.contains(day)
                    }
                    RowRef::Case { guild, number } => open_read(txn, CASES)?
                        .get((*guild, *number))
                        .map_err(e)?
                        .is_some(),
                    RowRef::AutomodHit {
                        guild,
                        message,
                        rule,
                    } => open_read(txn, AUTOMOD_HITS)?
                        .get((*guild, *message, rule.as_str()))
                        .map_err(e)?
                        .is_some(),
                    RowRef::Timer { guild, id } => {
                        super::timers::stored_in(txn, *guild, id)?.is_some()
                    }
                    RowRef::InboxEvent { id } => open_read(txn, super::premium::INBOX)?
                        .get(id.as_str())
                        .map_err(e)?
                        .is_some(),
                    RowRef::WorkflowVariable { guild, user, name } => {
                        open_read(txn, WORKFLOW_VARIABLES)?
                            .get((*guild, *user, name.as_str()))
                            .map_err(e)?
                            .is_some()
                    }
                    RowRef::WorkflowRun {
                        guild,
                        workflow,
                        slot,
                    } => open_read(txn, WORKFLOW_RUNS)?
                        .get((*guild, *workflow, *slot))
                        .map_err(e)?
                        .is_some(),
                    RowRef::AnnouncementDm {
                        campaign,
                        shard,
                        user,
                    } => open_read(txn, super::announcements::DM_DELIVERIES)?
                        .get((*campaign, *shard, *user))
                        .map_err(e)?
                        .is_some(),
                })
            };
            for def in [USER_REFS, EXPIRY] {
                for item in open_read(txn, def)?.iter().map_err(e)? {
                    let (key, _) = item.map_err(e)?;
                    let row = RowRef::parse(key.value().1)?;
                    if !exists(&row)? {
                        problems
                            .borrow_mut()
                            .push(format!("{} entry {row:?} points at nothing", def.name()));
                    }
                }
            }
            Ok(problems.into_inner())
        })
        .await
    }
}
