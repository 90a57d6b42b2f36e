//! The repository traits on ScyllaDB.

use std::time::Duration;

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt, stream};
use scylla::value::Counter;
use serde::{Serialize, de::DeserializeOwned};

use super::{ScyllaStore, db_id, rust_id, ttl};
use crate::row_ref::RowRef;
use crate::{
    Account, AccountRepo, AuditEntry, AuditRepo, BillingRepo, CONFIG_HISTORY_LEN, ClusterRepo,
    GuildConfig, GuildConfigRepo, Lease, NodeRecord, PromoCode, Redemption, SessionCheckpoint,
    ShardAssignment, StorageError, Subscription, Ticket, TicketRepo, Timestamp, TranscriptMessage,
    UsageCount, UsageRepo, VersionedConfig, Workflow, WorkflowRepo, lease,
};

/// Concurrent requests one call keeps in flight (batches of audit rows, usage deltas).
const IN_FLIGHT: usize = 64;
/// Audit partitions are (guild, 30-day bucket).
pub(super) const AUDIT_BUCKET_MS: u64 = 30 * 86_400_000;
/// Compare-and-set loops give up after this many lost races.
const CAS_TRIES: usize = 16;

pub(super) fn doc<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("stored types serialise to JSON")
}

pub(super) fn parse<T: DeserializeOwned>(what: &str, text: &str) -> Result<T, StorageError> {
    serde_json::from_str(text).map_err(|err| StorageError::corrupt(what, err))
}

pub(super) fn ref_text(row: &RowRef) -> String {
    row.json()
}

fn bucket(at: Timestamp) -> i32 {
    i32::try_from(at.as_millis() / AUDIT_BUCKET_MS).unwrap_or(i32::MAX)
}

pub(super) fn audit_users(entry: &AuditEntry) -> Vec<u64> {
    let mut users = vec![entry.actor_id];
    users.extend(entry.target_id.filter(|&t| t != entry.actor_id));
    users
}

impl ScyllaStore {
    pub(super) async fn add_ref(
        &self,
        user: u64,
        row: &RowRef,
        ttl_secs: Option<i32>,
    ) -> Result<(), StorageError> {
        match ttl_secs {
            Some(secs) => {
                self.execute(
                    "INSERT INTO {ks}.user_refs (user_id, ref) VALUES (?, ?) USING TTL ?",
                    true,
                    (db_id(user), ref_text(row), secs),
                )
                .await?
            }
            None => {
                self.execute(
                    "INSERT INTO {ks}.user_refs (user_id, ref) VALUES (?, ?)",
                    true,
                    (db_id(user), ref_text(row)),
                )
                .await?
            }
        };
        Ok(())
    }

    pub(super) async fn drop_ref(&self, user: u64, row: &RowRef) -> Result<(), StorageError> {
        self.execute(
            "DELETE FROM {ks}.user_refs WHERE user_id = ? AND ref = ?",
            true,
            (db_id(user), ref_text(row)),
        )
        .await?;
        Ok(())
    }

    pub(super) async fn refs_of(&self, user: u64) -> Result<Vec<RowRef>, StorageError> {
        let rows: Vec<(String,)> = self
            .select(
                "SELECT ref FROM {ks}.user_refs WHERE user_id = ?",
                (db_id(user),),
            )
            .await?;
        rows.iter()
            .map(|(text,)| RowRef::parse_json(text))
            .collect()
    }

    pub(super) async fn one_doc<T: DeserializeOwned>(
        &self,
        template: &'static str,
        what: &str,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> Result<Option<T>, StorageError> {
        let rows: Vec<(String,)> = self.select_limit(template, values, 1).await?;
        rows.first().map(|(text,)| parse(what, text)).transpose()
    }

    pub(super) async fn docs<T: DeserializeOwned>(
        &self,
        template: &'static str,
        what: &str,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> Result<Vec<T>, StorageError> {
        let rows: Vec<(String,)> = self.select(template, values).await?;
        rows.iter().map(|(text,)| parse(what, text)).collect()
    }

    pub(super) async fn get_ticket(
        &self,
        guild_id: u64,
        ticket_id: u64,
    ) -> Result<Option<Ticket>, StorageError> {
        self.one_doc(
            "SELECT doc FROM {ks}.tickets WHERE guild_id = ? AND ticket_id = ?",
            "tickets",
            (db_id(guild_id), db_id(ticket_id)),
        )
        .await
    }

    pub(super) async fn get_workflow(
        &self,
        guild_id: u64,
        workflow_id: u64,
    ) -> Result<Option<Workflow>, StorageError> {
        self.one_doc(
            "SELECT doc FROM {ks}.workflows WHERE guild_id = ? AND workflow_id = ?",
            "workflows",
            (db_id(guild_id), db_id(workflow_id)),
        )
        .await
    }

    pub(super) async fn write_workflow(&self, workflow: &Workflow) -> Result<(), StorageError> {
        let row = RowRef::Workflow {
            guild: workflow.guild_id,
            workflow: workflow.workflow_id,
        };
        if let Some(old) = self
            .get_workflow(workflow.guild_id, workflow.workflow_id)
            .await?
            && let Some(author) = old.created_by
            && old.created_by != workflow.created_by
        {
            self.drop_ref(author, &row).await?;
        }
        self.execute(
            "INSERT INTO {ks}.workflows (guild_id, workflow_id, doc) VALUES (?, ?, ?)",
            true,
            (
                db_id(workflow.guild_id),
                db_id(workflow.workflow_id),
                doc(workflow),
            ),
        )
        .await?;
        if let Some(author) = workflow.created_by {
            self.add_ref(author, &row, None).await?;
        }
        Ok(())
    }

    async fn read_lease(&self, name: &str) -> Result<Option<Lease>, StorageError> {
        let rows: Vec<(i64, i64, i64)> = self
            .select_limit(
                "SELECT holder, epoch, expires_at FROM {ks}.leases WHERE name = ?",
                (name,),
                1,
            )
            .await?;
        Ok(rows.first().map(|&(holder, epoch, expires_at)| Lease {
            name: name.to_owned(),
            holder: rust_id(holder),
            epoch: rust_id(epoch),
            expires_at: Timestamp(rust_id(expires_at)),
        }))
    }

    /// Replaces the lease `current` with `next` if nobody changed it in between.
    async fn swap_lease(
        &self,
        current: Option<&Lease>,
        next: &Lease,
    ) -> Result<bool, StorageError> {
        let outcome = match current {
            None => {
                self.lwt(
                    "INSERT INTO {ks}.leases (name, holder, epoch, expires_at) \
                     VALUES (?, ?, ?, ?) IF NOT EXISTS",
                    (
                        next.name.as_str(),
                        db_id(next.holder),
                        db_id(next.epoch),
                        db_id(next.expires_at.0),
                    ),
                )
                .await?
            }
            Some(current) => {
                self.lwt(
                    "UPDATE {ks}.leases SET holder = ?, epoch = ?, expires_at = ? WHERE name = ? \
                     IF holder = ? AND epoch = ? AND expires_at = ?",
                    (
                        db_id(next.holder),
                        db_id(next.epoch),
                        db_id(next.expires_at.0),
                        next.name.as_str(),
                        db_id(current.holder),
                        db_id(current.epoch),
                        db_id(current.expires_at.0),
                    ),
                )
                .await?
            }
        };
        Ok(outcome.applied)
    }

    async fn cas_lease(
        &self,
        name: &str,
        decide: impl Fn(Option<&Lease>) -> Result<Option<Lease>, StorageError>,
    ) -> Result<Option<Lease>, StorageError> {
        for _ in 0..CAS_TRIES {
            let current = self.read_lease(name).await?;
            let Some(next) = decide(current.as_ref())? else {
                return Ok(None);
            };
            if self.swap_lease(current.as_ref(), &next).await? {
                return Ok(Some(next));
            }
        }
        Err(StorageError::Database(format!(
            "lease {name}: too much contention"
        )))
    }
}

#[async_trait]
impl GuildConfigRepo for ScyllaStore {
    async fn load(&self, guild_id: u64) -> Result<Option<VersionedConfig>, StorageError> {
        let rows: Vec<(i64, String)> = self
            .select_limit(
                "SELECT version, doc FROM {ks}.guild_config WHERE guild_id = ?",
                (db_id(guild_id),),
                1,
            )
            .await?;
        rows.first()
            .map(|(version, text)| {
                Ok(VersionedConfig {
                    version: rust_id(*version),
                    config: parse("guild_config", text)?,
                })
            })
            .transpose()
    }

    async fn save(
        &self,
        guild_id: u64,
        expected: u64,
        config: &GuildConfig,
    ) -> Result<u64, StorageError> {
        let version = expected + 1;
        let text = doc(config);
        let outcome = if expected == 0 {
            self.lwt(
                "INSERT INTO {ks}.guild_config (guild_id, version, doc) VALUES (?, ?, ?) \
                 IF NOT EXISTS",
                (db_id(guild_id), db_id(version), text.as_str()),
            )
            .await?
        } else {
            self.lwt(
                "UPDATE {ks}.guild_config SET version = ?, doc = ? WHERE guild_id = ? \
                 IF version = ?",
                (
                    db_id(version),
                    text.as_str(),
                    db_id(guild_id),
                    db_id(expected),
                ),
            )
            .await?
        };
        if !outcome.applied {
            let current = match outcome.bigint("version") {
                Some(v) => rust_id(v),
                None => self.load(guild_id).await?.map_or(0, |c| c.version),
            };
            return Err(StorageError::Conflict { expected, current });
        }
        // Only the winner of the LWT writes history, so history never holds a losing
        // config. A crash right here loses this version's history row but not the version:
        // `history` always includes the current document.
        self.execute(
            "INSERT INTO {ks}.guild_config_history (guild_id, version, doc) VALUES (?, ?, ?)",
            true,
            (db_id(guild_id), db_id(version), text.as_str()),
        )
        .await?;
        if let Some(oldest_kept) = version.checked_sub(CONFIG_HISTORY_LEN - 1) {
            self.execute(
                "DELETE FROM {ks}.guild_config_history WHERE guild_id = ? AND version < ?",
                true,
                (db_id(guild_id), db_id(oldest_kept)),
            )
            .await?;
        }
        Ok(version)
    }

    async fn history(&self, guild_id: u64) -> Result<Vec<VersionedConfig>, StorageError> {
        let Some(current) = self.load(guild_id).await? else {
            return Ok(Vec::new());
        };
        let rows: Vec<(i64, String)> = self
            .select_limit(
                "SELECT version, doc FROM {ks}.guild_config_history WHERE guild_id = ? \
                 AND version < ?",
                (db_id(guild_id), db_id(current.version)),
                usize::try_from(CONFIG_HISTORY_LEN - 1).unwrap_or(usize::MAX),
            )
            .await?;
        let mut out = vec![current];
        for (version, text) in &rows {
            out.push(VersionedConfig {
                version: rust_id(*version),
                config: parse("guild_config_history", text)?,
            });
        }
        Ok(out)
    }
}

#[async_trait]
impl AuditRepo for ScyllaStore {
    async fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StorageError> {
        let retention = *self.retention();
        stream::iter(entries.iter().cloned())
            .map(|entry| async move {
                let Some(secs) = ttl(entry.at.saturating_add(retention.audit)) else {
                    return Ok(());
                };
                self.execute(
                    "INSERT INTO {ks}.audit_log (guild_id, bucket, at, id, doc) \
                     VALUES (?, ?, ?, ?, ?) USING TTL ?",
                    true,
                    (
                        db_id(entry.guild_id),
                        bucket(entry.at),
                        db_id(entry.at.0),
                        db_id(entry.id),
                        doc(&entry),
                        secs,
                    ),
                )
                .await?;
                let row = RowRef::Audit {
                    guild: entry.guild_id,
                    at: entry.at.0,
                    id: entry.id,
                };
                for user in audit_users(&entry) {
                    self.add_ref(user, &row, Some(secs)).await?;
                }
                Ok::<_, StorageError>(())
            })
            .buffer_unordered(IN_FLIGHT)
            .try_collect::<()>()
            .await
    }

    async fn list_audit(
        &self,
        guild_id: u64,
        from: Timestamp,
        to: Timestamp,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StorageError> {
        let mut out = Vec::new();
        if from >= to {
            return Ok(out);
        }
        // Buckets before the retention window hold nothing (TTL); skip them.
        let oldest = Timestamp::now().saturating_sub(self.retention().audit);
        let first = bucket(from.max(oldest));
        let last = bucket(Timestamp(to.0 - 1));
        for b in first..=last {
            let left = limit - out.len();
            if left == 0 {
                break;
            }
            let rows: Vec<(String,)> = self
                .select_limit(
                    "SELECT doc FROM {ks}.audit_log WHERE guild_id = ? AND bucket = ? \
                     AND at >= ? AND at < ?",
                    (db_id(guild_id), b, db_id(from.0), db_id(to.0)),
                    left,
                )
                .await?;
            for (text,) in &rows {
                out.push(parse("audit_log", text)?);
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl UsageRepo for ScyllaStore {
    async fn add_usage(&self, deltas: &[UsageCount]) -> Result<(), StorageError> {
        stream::iter(deltas.to_vec())
            .map(|delta| async move {
                let count = i64::try_from(delta.count).unwrap_or(i64::MAX);
                self.execute(
                    "UPDATE {ks}.command_usage SET count = count + ? \
                     WHERE guild_id = ? AND day = ? AND command = ?",
                    false,
                    (
                        Counter(count),
                        db_id(delta.guild_id),
                        i32::try_from(delta.day).unwrap_or(i32::MAX),
                        delta.command.as_str(),
                    ),
                )
                .await
                .map(drop)
            })
            .buffer_unordered(IN_FLIGHT)
            .try_collect::<()>()
            .await
    }

    async fn usage(
        &self,
        guild_id: u64,
        from_day: u32,
        to_day: u32,
    ) -> Result<Vec<UsageCount>, StorageError> {
        let day = |d: u32| i32::try_from(d).unwrap_or(i32::MAX);
        let rows: Vec<(i32, String, Counter)> = self
            .select(
                "SELECT day, command, count FROM {ks}.command_usage \
                 WHERE guild_id = ? AND day >= ? AND day <= ?",
                (db_id(guild_id), day(from_day), day(to_day)),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|(day, command, Counter(count))| UsageCount {
                guild_id,
                day: u32::try_from(day).unwrap_or(0),
                command,
                count: u64::try_from(count).unwrap_or(0),
            })
            .collect())
    }
}

#[async_trait]
impl AccountRepo for ScyllaStore {
    async fn put_account(&self, account: &Account) -> Result<(), StorageError> {
        let expires = account
            .last_active
            .saturating_add(self.retention().inactive_accounts);
        match ttl(expires) {
            Some(secs) => {
                self.execute(
                    "INSERT INTO {ks}.accounts (user_id, last_active, doc) VALUES (?, ?, ?) \
                     USING TTL ?",
                    true,
                    (
                        db_id(account.user_id),
                        db_id(account.last_active.0),
                        doc(account),
                        secs,
                    ),
                )
                .await?;
            }
            None => {
                self.execute(
                    "DELETE FROM {ks}.accounts WHERE user_id = ?",
                    true,
                    (db_id(account.user_id),),
                )
                .await?;
            }
        }
        Ok(())
    }

    async fn account(&self, user_id: u64) -> Result<Option<Account>, StorageError> {
        self.one_doc(
            "SELECT doc FROM {ks}.accounts WHERE user_id = ?",
            "accounts",
            (db_id(user_id),),
        )
        .await
    }

    async fn touch_account(&self, user_id: u64, at: Timestamp) -> Result<(), StorageError> {
        // Read-modify-write without LWT: two racing touches may both write, and the later
        // timestamp can lose by milliseconds; activity tracking tolerates that.
        let account = match self.account(user_id).await? {
            Some(account) if account.last_active >= at => return Ok(()),
            Some(account) => Account {
                last_active: at,
                ..account
            },
            None => Account {
                user_id,
                created_at: at,
                last_active: at,
                locale: None,
                announcements_consent: false,
            },
        };
        self.put_account(&account).await
    }
}

#[async_trait]
impl TicketRepo for ScyllaStore {
    async fn put_ticket(&self, ticket: &Ticket) -> Result<(), StorageError> {
        let row = RowRef::Ticket {
            guild: ticket.guild_id,
            ticket: ticket.ticket_id,
        };
        if let Some(old) = self.get_ticket(ticket.guild_id, ticket.ticket_id).await?
            && old.opener_id != ticket.opener_id
        {
            self.drop_ref(old.opener_id, &row).await?;
        }
        let Some(secs) = ttl(ticket.opened_at.saturating_add(self.retention().tickets)) else {
            return Ok(());
        };
        self.execute(
            "INSERT INTO {ks}.tickets (guild_id, ticket_id, opened_at, doc) VALUES (?, ?, ?, ?) \
             USING TTL ?",
            true,
            (
                db_id(ticket.guild_id),
                db_id(ticket.ticket_id),
                db_id(ticket.opened_at.0),
                doc(ticket),
                secs,
            ),
        )
        .await?;
        self.add_ref(ticket.opener_id, &row, Some(secs)).await
    }

    async fn ticket(&self, guild_id: u64, ticket_id: u64) -> Result<Option<Ticket>, StorageError> {
        self.get_ticket(guild_id, ticket_id).await
    }

    async fn tickets(&self, guild_id: u64) -> Result<Vec<Ticket>, StorageError> {
        self.docs(
            "SELECT doc FROM {ks}.tickets WHERE guild_id = ?",
            "tickets",
            (db_id(guild_id),),
        )
        .await
    }

    async fn append_transcript(&self, messages: &[TranscriptMessage]) -> Result<(), StorageError> {
        for message in messages {
            let Some(ticket) = self.get_ticket(message.guild_id, message.ticket_id).await? else {
                return Err(StorageError::NotFound(format!(
                    "ticket {} of guild {}",
                    message.ticket_id, message.guild_id
                )));
            };
            let Some(secs) = ttl(ticket.opened_at.saturating_add(self.retention().tickets)) else {
                continue;
            };
            self.execute(
                "INSERT INTO {ks}.transcripts (guild_id, ticket_id, message_id, doc) \
                 VALUES (?, ?, ?, ?) USING TTL ?",
                true,
                (
                    db_id(message.guild_id),
                    db_id(message.ticket_id),
                    db_id(message.message_id),
                    doc(message),
                    secs,
                ),
            )
            .await?;
            let row = RowRef::Transcript {
                guild: message.guild_id,
                ticket: message.ticket_id,
                message: message.message_id,
            };
            self.add_ref(message.author_id, &row, Some(secs)).await?;
        }
        Ok(())
    }

    async fn transcript(
        &self,
        guild_id: u64,
        ticket_id: u64,
    ) -> Result<Vec<TranscriptMessage>, StorageError> {
        self.docs(
            "SELECT doc FROM {ks}.transcripts WHERE guild_id = ? AND ticket_id = ?",
            "transcripts",
            (db_id(guild_id), db_id(ticket_id)),
        )
        .await
    }
}

#[async_trait]
impl WorkflowRepo for ScyllaStore {
    async fn put_workflow(&self, workflow: &Workflow) -> Result<(), StorageError> {
        self.write_workflow(workflow).await
    }

    async fn workflow(
        &self,
        guild_id: u64,
        workflow_id: u64,
    ) -> Result<Option<Workflow>, StorageError> {
        self.get_workflow(guild_id, workflow_id).await
    }

    async fn workflows(&self, guild_id: u64) -> Result<Vec<Workflow>, StorageError> {
        self.docs(
            "SELECT doc FROM {ks}.workflows WHERE guild_id = ?",
            "workflows",
            (db_id(guild_id),),
        )
        .await
    }

    async fn delete_workflow(&self, guild_id: u64, workflow_id: u64) -> Result<bool, StorageError> {
        let Some(old) = self.get_workflow(guild_id, workflow_id).await? else {
            return Ok(false);
        };
        self.execute(
            "DELETE FROM {ks}.workflows WHERE guild_id = ? AND workflow_id = ?",
            true,
            (db_id(guild_id), db_id(workflow_id)),
        )
        .await?;
        if let Some(author) = old.created_by {
            let row = RowRef::Workflow {
                guild: guild_id,
                workflow: workflow_id,
            };
            self.drop_ref(author, &row).await?;
        }
        Ok(true)
    }
}

#[async_trait]
impl BillingRepo for ScyllaStore {
    async fn put_subscription(&self, subscription: &Subscription) -> Result<(), StorageError> {
        let row = RowRef::Subscription {
            id: subscription.subscription_id,
        };
        if let Some(old) = self.subscription(subscription.subscription_id).await? {
            if old.user_id != subscription.user_id {
                self.drop_ref(old.user_id, &row).await?;
            }
            if let Some(guild) = old.guild_id
                && old.guild_id != subscription.guild_id
            {
                self.execute(
                    "DELETE FROM {ks}.subscriptions_by_guild \
                     WHERE guild_id = ? AND subscription_id = ?",
                    true,
                    (db_id(guild), db_id(subscription.subscription_id)),
                )
                .await?;
            }
        }
        self.execute(
            "INSERT INTO {ks}.subscriptions (subscription_id, doc) VALUES (?, ?)",
            true,
            (db_id(subscription.subscription_id), doc(subscription)),
        )
        .await?;
        if let Some(guild) = subscription.guild_id {
            self.execute(
                "INSERT INTO {ks}.subscriptions_by_guild (guild_id, subscription_id) VALUES (?, ?)",
                true,
                (db_id(guild), db_id(subscription.subscription_id)),
            )
            .await?;
        }
        self.add_ref(subscription.user_id, &row, None).await
    }

    async fn subscription(
        &self,
        subscription_id: u64,
    ) -> Result<Option<Subscription>, StorageError> {
        self.one_doc(
            "SELECT doc FROM {ks}.subscriptions WHERE subscription_id = ?",
            "subscriptions",
            (db_id(subscription_id),),
        )
        .await
    }

    async fn subscriptions_of_user(&self, user_id: u64) -> Result<Vec<Subscription>, StorageError> {
        let mut out = Vec::new();
        for row in self.refs_of(user_id).await? {
            if let RowRef::Subscription { id } = row {
                out.extend(self.subscription(id).await?);
            }
        }
        out.sort_by_key(|s| s.subscription_id);
        Ok(out)
    }

    async fn create_promo(&self, promo: &PromoCode) -> Result<(), StorageError> {
        if promo.code.is_empty() {
            return Err(StorageError::Invalid("empty promo code".into()));
        }
        let outcome = self
            .lwt(
                "INSERT INTO {ks}.promo_codes (code, doc, redeemed) VALUES (?, ?, 0) IF NOT EXISTS",
                (promo.code.as_str(), doc(promo)),
            )
            .await?;
        if !outcome.applied {
            return Err(StorageError::Invalid(format!(
                "promo code {} already exists",
                promo.code
            )));
        }
        Ok(())
    }

    async fn promo(&self, code: &str) -> Result<Option<(PromoCode, u32)>, StorageError> {
        let rows: Vec<(String, i32)> = self
            .select_limit(
                "SELECT doc, redeemed FROM {ks}.promo_codes WHERE code = ?",
                (code,),
                1,
            )
            .await?;
        rows.first()
            .map(|(text, redeemed)| {
                Ok((
                    parse("promo_codes", text)?,
                    u32::try_from(*redeemed).unwrap_or(0),
                ))
            })
            .transpose()
    }

    async fn redeem_promo(
        &self,
        code: &str,
        user_id: u64,
        at: Timestamp,
    ) -> Result<u32, StorageError> {
        let reject = |reason| StorageError::PromoRejected {
            code: code.to_owned(),
            reason,
        };
        let Some((promo, _)) = self.promo(code).await? else {
            return Err(reject("unknown code"));
        };
        if promo.expires_at <= at {
            return Err(reject("expired"));
        }
        let redemption = Redemption {
            code: code.to_owned(),
            user_id,
            at,
        };
        let claimed = self
            .lwt(
                "INSERT INTO {ks}.promo_redemptions (code, user_id, doc) VALUES (?, ?, ?) \
                 IF NOT EXISTS",
                (code, db_id(user_id), doc(&redemption)),
            )
            .await?;
        if !claimed.applied {
            return Err(reject("already redeemed by this user"));
        }
        for _ in 0..CAS_TRIES {
            let Some((promo, redeemed)) = self.promo(code).await? else {
                return Err(reject("unknown code"));
            };
            if redeemed >= promo.max_redemptions {
                self.lwt(
                    "DELETE FROM {ks}.promo_redemptions WHERE code = ? AND user_id = ? IF EXISTS",
                    (code, db_id(user_id)),
                )
                .await?;
                return Err(reject("exhausted"));
            }
            let next = redeemed + 1;
            let counted = self
                .lwt(
                    "UPDATE {ks}.promo_codes SET redeemed = ? WHERE code = ? IF redeemed = ?",
                    (
                        i32::try_from(next).unwrap_or(i32::MAX),
                        code,
                        i32::try_from(redeemed).unwrap_or(i32::MAX),
                    ),
                )
                .await?;
            if counted.applied {
                let row = RowRef::Redemption {
                    code: code.to_owned(),
                    user: user_id,
                };
                self.add_ref(user_id, &row, None).await?;
                return Ok(next);
            }
        }
        Err(StorageError::Database(format!(
            "promo {code}: too much contention"
        )))
    }

    async fn redemptions_of_user(&self, user_id: u64) -> Result<Vec<Redemption>, StorageError> {
        let mut out = Vec::new();
        for row in self.refs_of(user_id).await? {
            if let RowRef::Redemption { code, user } = row {
                out.extend(
                    self.one_doc::<Redemption>(
                        "SELECT doc FROM {ks}.promo_redemptions WHERE code = ? AND user_id = ?",
                        "promo_redemptions",
                        (code.as_str(), db_id(user)),
                    )
                    .await?,
                );
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl ClusterRepo for ScyllaStore {
    async fn put_node(&self, node: &NodeRecord) -> Result<(), StorageError> {
        self.execute(
            "INSERT INTO {ks}.nodes (part, node_id, doc) VALUES (0, ?, ?)",
            true,
            (db_id(node.node_id), doc(node)),
        )
        .await?;
        Ok(())
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>, StorageError> {
        self.docs("SELECT doc FROM {ks}.nodes WHERE part = 0", "nodes", ())
            .await
    }

    async fn remove_node(&self, node_id: u64) -> Result<(), StorageError> {
        self.execute(
            "DELETE FROM {ks}.nodes WHERE part = 0 AND node_id = ?",
            true,
            (db_id(node_id),),
        )
        .await?;
        Ok(())
    }

    async fn assign_shard(
        &self,
        shard_id: u32,
        node_id: u64,
        expected_epoch: u64,
    ) -> Result<ShardAssignment, StorageError> {
        let shard = i32::try_from(shard_id)
            .map_err(|_| StorageError::Invalid(format!("shard id {shard_id}")))?;
        let epoch = expected_epoch + 1;
        let outcome = if expected_epoch == 0 {
            self.lwt(
                "INSERT INTO {ks}.shard_assignments (part, shard_id, node_id, epoch) \
                 VALUES (0, ?, ?, ?) IF NOT EXISTS",
                (shard, db_id(node_id), db_id(epoch)),
            )
            .await?
        } else {
            self.lwt(
                "UPDATE {ks}.shard_assignments SET node_id = ?, epoch = ? \
                 WHERE part = 0 AND shard_id = ? IF epoch = ?",
                (db_id(node_id), db_id(epoch), shard, db_id(expected_epoch)),
            )
            .await?
        };
        if !outcome.applied {
            let current = match outcome.bigint("epoch") {
                Some(epoch) => rust_id(epoch),
                None => self
                    .assignments()
                    .await?
                    .iter()
                    .find(|a| a.shard_id == shard_id)
                    .map_or(0, |a| a.epoch),
            };
            return Err(StorageError::Conflict {
                expected: expected_epoch,
                current,
            });
        }
        Ok(ShardAssignment {
            shard_id,
            node_id,
            epoch,
        })
    }

    async fn assignments(&self) -> Result<Vec<ShardAssignment>, StorageError> {
        let rows: Vec<(i32, i64, i64)> = self
            .select(
                "SELECT shard_id, node_id, epoch FROM {ks}.shard_assignments WHERE part = 0",
                (),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|(shard, node, epoch)| ShardAssignment {
                shard_id: u32::try_from(shard).unwrap_or(0),
                node_id: rust_id(node),
                epoch: rust_id(epoch),
            })
            .collect())
    }

    async fn save_checkpoint(&self, checkpoint: &SessionCheckpoint) -> Result<(), StorageError> {
        let shard = i32::try_from(checkpoint.shard_id)
            .map_err(|_| StorageError::Invalid(format!("shard id {}", checkpoint.shard_id)))?;
        for _ in 0..CAS_TRIES {
            let current = self.checkpoint(checkpoint.shard_id).await?;
            let outcome = match &current {
                Some(current) if current.epoch > checkpoint.epoch => {
                    return Err(StorageError::Fenced {
                        presented: checkpoint.epoch,
                        current: current.epoch,
                    });
                }
                Some(current) => {
                    self.lwt(
                        "UPDATE {ks}.session_checkpoints SET epoch = ?, doc = ? \
                         WHERE shard_id = ? IF epoch = ?",
                        (
                            db_id(checkpoint.epoch),
                            doc(checkpoint),
                            shard,
                            db_id(current.epoch),
                        ),
                    )
                    .await?
                }
                None => {
                    self.lwt(
                        "INSERT INTO {ks}.session_checkpoints (shard_id, epoch, doc) \
                         VALUES (?, ?, ?) IF NOT EXISTS",
                        (shard, db_id(checkpoint.epoch), doc(checkpoint)),
                    )
                    .await?
                }
            };
            if outcome.applied {
                return Ok(());
            }
        }
        Err(StorageError::Database(
            "checkpoint: too much contention".into(),
        ))
    }

    async fn checkpoint(&self, shard_id: u32) -> Result<Option<SessionCheckpoint>, StorageError> {
        let shard = i32::try_from(shard_id)
            .map_err(|_| StorageError::Invalid(format!("shard id {shard_id}")))?;
        self.one_doc(
            "SELECT doc FROM {ks}.session_checkpoints WHERE shard_id = ?",
            "session_checkpoints",
            (shard,),
        )
        .await
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: u64,
        now: Timestamp,
        ttl: Duration,
    ) -> Result<Lease, StorageError> {
        let lease = self
            .cas_lease(name, |current| {
                lease::acquire(current, name, holder, now, ttl).map(Some)
            })
            .await?;
        Ok(lease.expect("acquire always proposes a lease"))
    }

    async fn renew_lease(
        &self,
        name: &str,
        holder: u64,
        epoch: u64,
        now: Timestamp,
        ttl: Duration,
    ) -> Result<Lease, StorageError> {
        let lease = self
            .cas_lease(name, |current| {
                lease::renew(current, name, holder, epoch, now, ttl).map(Some)
            })
            .await?;
        Ok(lease.expect("renew always proposes a lease"))
    }

    async fn release_lease(&self, name: &str, holder: u64, epoch: u64) -> Result<(), StorageError> {
        self.cas_lease(name, |current| Ok(lease::release(current, holder, epoch)))
            .await?;
        Ok(())
    }

    async fn lease(&self, name: &str) -> Result<Option<Lease>, StorageError> {
        self.read_lease(name).await
    }
}
