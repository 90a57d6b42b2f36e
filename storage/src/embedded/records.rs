//! Accounts, tickets, workflows, billing and the cluster tables on redb.

use std::time::Duration;

use async_trait::async_trait;
use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{
    ACCOUNTS, ASSIGNMENTS, CHECKPOINTS, CLUSTER_META, EmbeddedStore, LEADER_ANNOUNCEMENT, LEASES,
    NODES, PROMOS, REDEMPTIONS, RESHARDINGS, RowRef, SUBSCRIPTIONS, TICKET_COUNTERS, TICKETS,
    TRANSCRIPTS, USER_REFS, WORKFLOWS, e, from_json, index, open, open_read, to_json, unindex,
};
use crate::cluster::{ASSIGNMENTS_CLAIM, SHARD_COUNT, check_claim};
use crate::{
    Account, AccountRepo, BillingRepo, ClusterRepo, LeaderAnnouncement, Lease, NodeRecord,
    PromoCode, Redemption, ReshardPhase, Resharding, Retention, SessionCheckpoint, ShardAssignment,
    StorageError, Subscription, Ticket, TicketQuery, TicketRepo, Timestamp, TranscriptMessage,
    Workflow, WorkflowRepo, WorkflowRun, WorkflowVariable, lease,
};

/// The key of the one row of `leader_announcement`.
const LEADER: &str = "leader";

/// A promo code with its redemption count, as stored.
#[derive(Serialize, Deserialize)]
pub(super) struct StoredPromo {
    pub(super) promo: PromoCode,
    pub(super) redeemed: u32,
}

pub(super) fn account_expiry(account: &Account, retention: &Retention) -> Timestamp {
    account
        .last_active
        .saturating_add(retention.inactive_accounts)
}

pub(super) fn ticket_expiry(opened_at: Timestamp, retention: &Retention) -> Timestamp {
    opened_at.saturating_add(retention.tickets)
}

/// Replaces an account, moving its expiry entry.
pub(super) fn write_account(
    txn: &WriteTransaction,
    account: &Account,
    retention: &Retention,
) -> Result<(), StorageError> {
    let row = RowRef::Account {
        user: account.user_id,
    };
    let previous = open(txn, ACCOUNTS)?
        .insert(account.user_id, to_json(account).as_slice())
        .map_err(e)?
        .map(|old| old.value().to_vec());
    if let Some(old) = previous {
        let old: Account = from_json("accounts", &old)?;
        unindex(txn, &row, &[], Some(account_expiry(&old, retention)))?;
    }
    index(txn, &row, &[], Some(account_expiry(account, retention)))
}

pub(super) fn write_ticket(
    txn: &WriteTransaction,
    ticket: &Ticket,
    retention: &Retention,
) -> Result<(), StorageError> {
    let row = RowRef::Ticket {
        guild: ticket.guild_id,
        ticket: ticket.ticket_id,
    };
    let previous = open(txn, TICKETS)?
        .insert(
            (ticket.guild_id, ticket.ticket_id),
            to_json(ticket).as_slice(),
        )
        .map_err(e)?
        .map(|old| old.value().to_vec());
    if let Some(old) = previous {
        let old: Ticket = from_json("tickets", &old)?;
        unindex(
            txn,
            &row,
            &[old.opener_id],
            Some(ticket_expiry(old.opened_at, retention)),
        )?;
    }
    index(
        txn,
        &row,
        &[ticket.opener_id],
        Some(ticket_expiry(ticket.opened_at, retention)),
    )
}

pub(super) fn write_workflow(
    txn: &WriteTransaction,
    workflow: &Workflow,
) -> Result<(), StorageError> {
    let row = RowRef::Workflow {
        guild: workflow.guild_id,
        workflow: workflow.workflow_id,
    };
    let previous = open(txn, WORKFLOWS)?
        .insert(
            (workflow.guild_id, workflow.workflow_id),
            to_json(workflow).as_slice(),
        )
        .map_err(e)?
        .map(|old| old.value().to_vec());
    if let Some(old) = previous {
        let old: Workflow = from_json("workflows", &old)?;
        unindex(txn, &row, old.created_by.as_slice(), None)?;
    }
    index(txn, &row, workflow.created_by.as_slice(), None)
}

/// The refs of one user, optionally only one kind, read inside any transaction.
pub(super) fn user_refs(
    table: &impl ReadableTable<(u64, &'static [u8]), ()>,
    user_id: u64,
) -> Result<Vec<RowRef>, StorageError> {
    let mut out = Vec::new();
    for row in table.range((user_id, &[][..])..).map_err(e)? {
        let (key, _) = row.map_err(e)?;
        let (user, bytes) = key.value();
        if user != user_id {
            break;
        }
        out.push(RowRef::parse(bytes)?);
    }
    Ok(out)
}

#[async_trait]
impl AccountRepo for EmbeddedStore {
    async fn put_account(&self, account: &Account) -> Result<(), StorageError> {
        let account = account.clone();
        self.write(move |txn, retention| write_account(txn, &account, retention))
            .await
    }

    async fn account(&self, user_id: u64) -> Result<Option<Account>, StorageError> {
        self.read(move |txn, _| {
            let table = open_read(txn, ACCOUNTS)?;
            let row = table.get(user_id).map_err(e)?;
            row.map(|v| from_json(format_args!("accounts/{user_id}"), v.value()))
                .transpose()
        })
        .await
    }

    async fn touch_account(&self, user_id: u64, at: Timestamp) -> Result<(), StorageError> {
        self.write(move |txn, retention| {
            let current: Option<Account> = {
                let table = open(txn, ACCOUNTS)?;
                let row = table.get(user_id).map_err(e)?;
                row.map(|v| from_json("accounts", v.value())).transpose()?
            };
            let account = match current {
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
            write_account(txn, &account, retention)
        })
        .await
    }
}

#[async_trait]
impl TicketRepo for EmbeddedStore {
    async fn put_ticket(&self, ticket: &Ticket) -> Result<(), StorageError> {
        let ticket = ticket.clone();
        self.write(move |txn, retention| write_ticket(txn, &ticket, retention))
            .await
    }

    async fn open_ticket(
        &self,
        ticket: &Ticket,
        max_open: u32,
    ) -> Result<Option<u64>, StorageError> {
        let mut ticket = ticket.clone();
        // One write transaction at a time: the count and the number cannot race.
        self.write(move |txn, retention| {
            let open_now = {
                let table = open(txn, TICKETS)?;
                let mut count = 0_u32;
                for row in table
                    .range((ticket.guild_id, 0)..=(ticket.guild_id, u64::MAX))
                    .map_err(e)?
                {
                    let other: Ticket = from_json("tickets", row.map_err(e)?.1.value())?;
                    if other.opener_id == ticket.opener_id && other.is_open() {
                        count += 1;
                    }
                }
                count
            };
            if open_now >= max_open {
                return Ok(None);
            }
            let mut counters = open(txn, TICKET_COUNTERS)?;
            let last = counters
                .get(ticket.guild_id)
                .map_err(e)?
                .map_or(0, |v| v.value());
            ticket.ticket_id = last + 1;
            counters
                .insert(ticket.guild_id, ticket.ticket_id)
                .map_err(e)?;
            drop(counters);
            write_ticket(txn, &ticket, retention)?;
            Ok(Some(ticket.ticket_id))
        })
        .await
    }

    async fn ticket(&self, guild_id: u64, ticket_id: u64) -> Result<Option<Ticket>, StorageError> {
        self.read(move |txn, _| {
            let table = open_read(txn, TICKETS)?;
            let row = table.get((guild_id, ticket_id)).map_err(e)?;
            row.map(|v| from_json("tickets", v.value())).transpose()
        })
        .await
    }

    async fn tickets(&self, guild_id: u64) -> Result<Vec<Ticket>, StorageError> {
        self.read(move |txn, _| {
            let table = open_read(txn, TICKETS)?;
            let mut out = Vec::new();
            for row in table
                .range((guild_id, 0)..=(guild_id, u64::MAX))
                .map_err(e)?
            {
                out.push(from_json("tickets", row.map_err(e)?.1.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn list_tickets(
        &self,
        guild_id: u64,
        query: &TicketQuery,
    ) -> Result<Vec<Ticket>, StorageError> {
        let query = query.clone();
        self.read(move |txn, _| {
            let table = open_read(txn, TICKETS)?;
            let below = query.before.unwrap_or(u64::MAX);
            let mut out = Vec::new();
            if query.limit == 0 || below == 0 {
                return Ok(out);
            }
            for row in table
                .range((guild_id, 0)..(guild_id, below))
                .map_err(e)?
                .rev()
            {
                let ticket: Ticket = from_json("tickets", row.map_err(e)?.1.value())?;
                if query.matches(&ticket) {
                    out.push(ticket);
                    if out.len() == query.limit {
                        break;
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn append_transcript(&self, messages: &[TranscriptMessage]) -> Result<(), StorageError> {
        let messages = messages.to_vec();
        self.write(move |txn, retention| {
            for message in &messages {
                let opened_at = {
                    let tickets = open(txn, TICKETS)?;
                    let row = tickets
                        .get((message.guild_id, message.ticket_id))
                        .map_err(e)?;
                    let Some(row) = row else {
                        return Err(StorageError::NotFound(format!(
                            "ticket {} of guild {}",
                            message.ticket_id, message.guild_id
                        )));
                    };
                    from_json::<Ticket>("tickets", row.value())?.opened_at
                };
                let expires = Some(ticket_expiry(opened_at, retention));
                let row = RowRef::Transcript {
                    guild: message.guild_id,
                    ticket: message.ticket_id,
                    message: message.message_id,
                };
                let previous = open(txn, TRANSCRIPTS)?
                    .insert(
                        (message.guild_id, message.ticket_id, message.message_id),
                        to_json(message).as_slice(),
                    )
                    .map_err(e)?
                    .map(|old| old.value().to_vec());
                if let Some(old) = previous {
                    let old: TranscriptMessage = from_json("transcripts", &old)?;
                    unindex(txn, &row, &old.users(), expires)?;
                }
                index(txn, &row, &message.users(), expires)?;
            }
            Ok(())
        })
        .await
    }

    async fn transcript(
        &self,
        guild_id: u64,
        ticket_id: u64,
    ) -> Result<Vec<TranscriptMessage>, StorageError> {
        self.read(move |txn, _| {
            let table = open_read(txn, TRANSCRIPTS)?;
            let mut out = Vec::new();
            for row in table
                .range((guild_id, ticket_id, 0)..=(guild_id, ticket_id, u64::MAX))
                .map_err(e)?
            {
                out.push(from_json("transcripts", row.map_err(e)?.1.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn transcript_page(
        &self,
        guild_id: u64,
        ticket_id: u64,
        after: u64,
        limit: usize,
    ) -> Result<Vec<TranscriptMessage>, StorageError> {
        self.read(move |txn, _| {
            let table = open_read(txn, TRANSCRIPTS)?;
            let mut out = Vec::new();
            if after == u64::MAX {
                return Ok(out);
            }
            for row in table
                .range((guild_id, ticket_id, after + 1)..=(guild_id, ticket_id, u64::MAX))
                .map_err(e)?
                .take(limit)
            {
                out.push(from_json("transcripts", row.map_err(e)?.1.value())?);
            }
            Ok(out)
        })
        .await
    }
}

#[async_trait]
impl WorkflowRepo for EmbeddedStore {
    async fn put_workflow(&self, workflow: &Workflow) -> Result<(), StorageError> {
        let workflow = workflow.clone();
        self.write(move |txn, _| write_workflow(txn, &workflow))
            .await
    }

    async fn workflow(
        &self,
        guild_id: u64,
        workflow_id: u64,
    ) -> Result<Option<Workflow>, StorageError> {
        self.read(move |txn, _| {
            let table = open_read(txn, WORKFLOWS)?;
            let row = table.get((guild_id, workflow_id)).map_err(e)?;
            row.map(|v| from_json("workflows", v.value())).transpose()
        })
        .await
    }

    async fn workflows(&self, guild_id: u64) -> Result<Vec<Workflow>, StorageError> {
        self.read(move |txn, _| {
            let table = open_read(txn, WORKFLOWS)?;
            let mut out = Vec::new();
            for row in table
                .range((guild_id, 0)..=(guild_id, u64::MAX))
                .map_err(e)?
            {
                out.push(from_json("workflows", row.map_err(e)?.1.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn delete_workflow(&self, guild_id: u64, workflow_id: u64) -> Result<bool, StorageError> {
        self.write(move |txn, retention| {
            super::workflow_data::delete_runs(txn, guild_id, Some(workflow_id), retention)?;
            let previous = open(txn, WORKFLOWS)?
                .remove((guild_id, workflow_id))
                .map_err(e)?
                .map(|old| old.value().to_vec());
            let Some(old) = previous else {
                return Ok(false);
            };
            let old: Workflow = from_json("workflows", &old)?;
            let row = RowRef::Workflow {
                guild: guild_id,
                workflow: workflow_id,
            };
            unindex(txn, &row, old.created_by.as_slice(), None)?;
            Ok(true)
        })
        .await
    }

    async fn put_workflow_variables(
        &self,
        variables: &[WorkflowVariable],
    ) -> Result<(), StorageError> {
        self.write_workflow_variables(variables).await
    }

    async fn workflow_variables(
        &self,
        guild_id: u64,
    ) -> Result<Vec<WorkflowVariable>, StorageError> {
        self.read_workflow_variables(guild_id).await
    }

    async fn put_workflow_run(&self, run: &WorkflowRun) -> Result<(), StorageError> {
        self.write_workflow_run(run).await
    }

    async fn workflow_runs(&self, guild_id: u64) -> Result<Vec<WorkflowRun>, StorageError> {
        self.read_workflow_runs(guild_id).await
    }
}

pub(super) fn write_subscription(
    txn: &WriteTransaction,
    subscription: &Subscription,
) -> Result<(), StorageError> {
    let row = RowRef::Subscription {
        id: subscription.subscription_id,
    };
    let previous = open(txn, SUBSCRIPTIONS)?
        .insert(
            subscription.subscription_id,
            to_json(subscription).as_slice(),
        )
        .map_err(e)?
        .map(|old| old.value().to_vec());
    if let Some(old) = previous {
        let old: Subscription = from_json("subscriptions", &old)?;
        unindex(txn, &row, &[old.user_id], None)?;
    }
    index(txn, &row, &[subscription.user_id], None)
}

#[async_trait]
impl BillingRepo for EmbeddedStore {
    async fn put_subscription(&self, subscription: &Subscription) -> Result<(), StorageError> {
        let subscription = subscription.clone();
        self.write(move |txn, _| write_subscription(txn, &subscription))
            .await
    }

    async fn subscription(
        &self,
        subscription_id: u64,
    ) -> Result<Option<Subscription>, StorageError> {
        self.read(move |txn, _| {
            let table = open_read(txn, SUBSCRIPTIONS)?;
            let row = table.get(subscription_id).map_err(e)?;
            row.map(|v| from_json("subscriptions", v.value()))
                .transpose()
        })
        .await
    }

    async fn subscriptions_of_user(&self, user_id: u64) -> Result<Vec<Subscription>, StorageError> {
        self.read(move |txn, _| {
            let refs = user_refs(&open_read(txn, USER_REFS)?, user_id)?;
            let table = open_read(txn, SUBSCRIPTIONS)?;
            let mut out = Vec::new();
            for row in refs {
                if let RowRef::Subscription { id } = row
                    && let Some(v) = table.get(id).map_err(e)?
                {
                    out.push(from_json("subscriptions", v.value())?);
                }
            }
            out.sort_by_key(|s: &Subscription| s.subscription_id);
            Ok(out)
        })
        .await
    }

    async fn create_promo(&self, promo: &PromoCode) -> Result<(), StorageError> {
        if promo.code.is_empty() {
            return Err(StorageError::Invalid("empty promo code".into()));
        }
        let promo = promo.clone();
        self.write(move |txn, _| {
            let mut table = open(txn, PROMOS)?;
            if table.get(promo.code.as_str()).map_err(e)?.is_some() {
                return Err(StorageError::Invalid(format!(
                    "promo code {} already exists",
                    promo.code
                )));
            }
            let code = promo.code.clone();
            let stored = StoredPromo { promo, redeemed: 0 };
            table
                .insert(code.as_str(), to_json(&stored).as_slice())
                .map_err(e)?;
            Ok(())
        })
        .await
    }

    async fn promo(&self, code: &str) -> Result<Option<(PromoCode, u32)>, StorageError> {
        let code = code.to_owned();
        self.read(move |txn, _| {
            let table = open_read(txn, PROMOS)?;
            let row = table.get(code.as_str()).map_err(e)?;
            Ok(row
                .map(|v| from_json::<StoredPromo>("promo_codes", v.value()))
                .transpose()?
                .map(|s| (s.promo, s.redeemed)))
        })
        .await
    }

    async fn promos(&self, limit: usize) -> Result<Vec<(PromoCode, u32)>, StorageError> {
        self.read(move |txn, _| {
            let table = open_read(txn, PROMOS)?;
            let mut out = Vec::new();
            for row in table.iter().map_err(e)?.take(limit) {
                let (_, v) = row.map_err(e)?;
                let stored: StoredPromo = from_json("promo_codes", v.value())?;
                out.push((stored.promo, stored.redeemed));
            }
            Ok(out)
        })
        .await
    }

    async fn redeem_promo(
        &self,
        code: &str,
        user_id: u64,
        at: Timestamp,
    ) -> Result<u32, StorageError> {
        let code = code.to_owned();
        self.write(move |txn, _| {
            let reject = |reason| StorageError::PromoRejected {
                code: code.clone(),
                reason,
            };
            let mut stored: StoredPromo = {
                let table = open(txn, PROMOS)?;
                let row = table.get(code.as_str()).map_err(e)?;
                let row = row.ok_or_else(|| reject("unknown code"))?;
                from_json("promo_codes", row.value())?
            };
            if stored.promo.expires_at <= at {
                return Err(reject("expired"));
            }
            if stored.redeemed >= stored.promo.max_redemptions {
                return Err(reject("exhausted"));
            }
            let redemption = Redemption {
                code: code.clone(),
                user_id,
                at,
            };
            {
                let mut table = open(txn, REDEMPTIONS)?;
                if table.get((code.as_str(), user_id)).map_err(e)?.is_some() {
                    return Err(reject("already redeemed by this user"));
                }
                table
                    .insert((code.as_str(), user_id), to_json(&redemption).as_slice())
                    .map_err(e)?;
            }
            let row = RowRef::Redemption {
                code: code.clone(),
                user: user_id,
            };
            index(txn, &row, &[user_id], None)?;
            stored.redeemed += 1;
            open(txn, PROMOS)?
                .insert(code.as_str(), to_json(&stored).as_slice())
                .map_err(e)?;
            Ok(stored.redeemed)
        })
        .await
    }

    async fn redemptions_of_user(&self, user_id: u64) -> Result<Vec<Redemption>, StorageError> {
        self.read(move |txn, _| {
            let refs = user_refs(&open_read(txn, USER_REFS)?, user_id)?;
            let table = open_read(txn, REDEMPTIONS)?;
            let mut out = Vec::new();
            for row in refs {
                if let RowRef::Redemption { code, user } = row
                    && let Some(v) = table.get((code.as_str(), user)).map_err(e)?
                {
                    out.push(from_json("promo_redemptions", v.value())?);
                }
            }
            Ok(out)
        })
        .await
    }
}

/// The key of the one row of `reshardings`.
const CURRENT: &str = "current";

fn read_json<K, T>(
    table: &impl ReadableTable<K, &'static [u8]>,
    name: &str,
    key: K::SelfType<'_>,
) -> Result<Option<T>, StorageError>
where
    K: redb::Key + 'static,
    T: serde::de::DeserializeOwned,
{
    let row = table.get(key).map_err(e)?;
    row.map(|v| from_json(name, v.value())).transpose()
}

#[async_trait]
impl ClusterRepo for EmbeddedStore {
    async fn put_node(&self, node: &NodeRecord) -> Result<(), StorageError> {
        let node = node.clone();
        self.write(move |txn, _| {
            open(txn, NODES)?
                .insert(node.node_id, to_json(&node).as_slice())
                .map_err(e)?;
            Ok(())
        })
        .await
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>, StorageError> {
        self.read(move |txn, _| {
            let table = open_read(txn, NODES)?;
            let mut out = Vec::new();
            for row in table.iter().map_err(e)? {
                out.push(from_json("nodes", row.map_err(e)?.1.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn remove_node(&self, node_id: u64) -> Result<(), StorageError> {
        self.write(move |txn, _| {
            open(txn, NODES)?.remove(node_id).map_err(e)?;
            Ok(())
        })
        .await
    }

    async fn assign_shard(
        &self,
        shard_id: u32,
        node_id: u64,
        expected_epoch: u64,
        leader_epoch: u64,
    ) -> Result<ShardAssignment, StorageError> {
        self.write(move |txn, _| {
            let claimed = open(txn, CLUSTER_META)?
                .get(ASSIGNMENTS_CLAIM)
                .map_err(e)?
                .map_or(0, |epoch| epoch.value());
            check_claim(claimed, leader_epoch)?;
            let mut table = open(txn, ASSIGNMENTS)?;
            let current: Option<ShardAssignment> =
                read_json(&table, "shard_assignments", shard_id)?;
            let current = current.map_or(0, |a| a.epoch);
            if current != expected_epoch {
                return Err(StorageError::Conflict {
                    expected: expected_epoch,
                    current,
                });
            }
            let assignment = ShardAssignment {
                shard_id,
                node_id,
                epoch: current + 1,
            };
            table
                .insert(shard_id, to_json(&assignment).as_slice())
                .map_err(e)?;
            Ok(assignment)
        })
        .await
    }

    async fn claim_assignments(&self, leader_epoch: u64) -> Result<(), StorageError> {
        self.write(move |txn, _| {
            let mut table = open(txn, CLUSTER_META)?;
            let claimed = table
                .get(ASSIGNMENTS_CLAIM)
                .map_err(e)?
                .map_or(0, |epoch| epoch.value());
            if claimed > leader_epoch {
                return Err(StorageError::Fenced {
                    presented: leader_epoch,
                    current: claimed,
                });
            }
            table.insert(ASSIGNMENTS_CLAIM, leader_epoch).map_err(e)?;
            Ok(())
        })
        .await
    }

    async fn assignments(&self) -> Result<Vec<ShardAssignment>, StorageError> {
        self.read(move |txn, _| {
            let table = open_read(txn, ASSIGNMENTS)?;
            let mut out = Vec::new();
            for row in table.iter().map_err(e)? {
                out.push(from_json("shard_assignments", row.map_err(e)?.1.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn save_checkpoint(&self, checkpoint: &SessionCheckpoint) -> Result<(), StorageError> {
        let checkpoint = checkpoint.clone();
        self.write(move |txn, _| {
            let mut table = open(txn, CHECKPOINTS)?;
            let current: Option<SessionCheckpoint> =
                read_json(&table, "session_checkpoints", checkpoint.shard_id)?;
            if let Some(current) = current
                && current.epoch > checkpoint.epoch
            {
                return Err(StorageError::Fenced {
                    presented: checkpoint.epoch,
                    current: current.epoch,
                });
            }
            table
                .insert(checkpoint.shard_id, to_json(&checkpoint).as_slice())
                .map_err(e)?;
            Ok(())
        })
        .await
    }

    async fn save_checkpoints(
        &self,
        checkpoints: &[SessionCheckpoint],
    ) -> Result<Vec<u32>, StorageError> {
        let checkpoints = checkpoints.to_vec();
        // One commit for the whole batch: a node's checkpoints cost one fsync per heartbeat.
        self.write(move |txn, _| {
            let assignments = open(txn, ASSIGNMENTS)?;
            let mut table = open(txn, CHECKPOINTS)?;
            let mut stale = Vec::new();
            for checkpoint in &checkpoints {
                let assigned: Option<ShardAssignment> =
                    read_json(&assignments, "shard_assignments", checkpoint.shard_id)?;
                let stored: Option<SessionCheckpoint> =
                    read_json(&table, "session_checkpoints", checkpoint.shard_id)?;
                let newest = assigned
                    .map(|a| a.epoch)
                    .into_iter()
                    .chain(stored.map(|c| c.epoch))
                    .max();
                if newest.is_some_and(|epoch| checkpoint.epoch < epoch) {
                    stale.push(checkpoint.shard_id);
                    continue;
                }
                table
                    .insert(checkpoint.shard_id, to_json(checkpoint).as_slice())
                    .map_err(e)?;
            }
            Ok(stale)
        })
        .await
    }

    async fn checkpoint(&self, shard_id: u32) -> Result<Option<SessionCheckpoint>, StorageError> {
        self.read(move |txn, _| {
            read_json(
                &open_read(txn, CHECKPOINTS)?,
                "session_checkpoints",
                shard_id,
            )
        })
        .await
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: u64,
        now: Timestamp,
        ttl: Duration,
    ) -> Result<Lease, StorageError> {
        let name = name.to_owned();
        self.write(move |txn, _| {
            let mut table = open(txn, LEASES)?;
            let current: Option<Lease> = read_json(&table, "leases", name.as_str())?;
            let next = lease::acquire(current.as_ref(), &name, holder, now, ttl)?;
            table
                .insert(name.as_str(), to_json(&next).as_slice())
                .map_err(e)?;
            Ok(next)
        })
        .await
    }

    async fn renew_lease(
        &self,
        name: &str,
        holder: u64,
        epoch: u64,
        now: Timestamp,
        ttl: Duration,
    ) -> Result<Lease, StorageError> {
        let name = name.to_owned();
        self.write(move |txn, _| {
            let mut table = open(txn, LEASES)?;
            let current: Option<Lease> = read_json(&table, "leases", name.as_str())?;
            let next = lease::renew(current.as_ref(), &name, holder, epoch, now, ttl)?;
            table
                .insert(name.as_str(), to_json(&next).as_slice())
                .map_err(e)?;
            Ok(next)
        })
        .await
    }

    async fn release_lease(&self, name: &str, holder: u64, epoch: u64) -> Result<(), StorageError> {
        let name = name.to_owned();
        self.write(move |txn, _| {
            let mut table = open(txn, LEASES)?;
            let current: Option<Lease> = read_json(&table, "leases", name.as_str())?;
            if let Some(released) = lease::release(current.as_ref(), holder, epoch) {
                table
                    .insert(name.as_str(), to_json(&released).as_slice())
                    .map_err(e)?;
            }
            Ok(())
        })
        .await
    }

    async fn lease(&self, name: &str) -> Result<Option<Lease>, StorageError> {
        let name = name.to_owned();
        self.read(move |txn, _| read_json(&open_read(txn, LEASES)?, "leases", name.as_str()))
            .await
    }

    async fn announce_leader(&self, announcement: &LeaderAnnouncement) -> Result<(), StorageError> {
        let value = to_json(announcement);
        self.write(move |txn, _| {
            open(txn, LEADER_ANNOUNCEMENT)?
                .insert(LEADER, value.as_slice())
                .map_err(e)?;
            Ok(())
        })
        .await
    }

    async fn leader_announcement(&self) -> Result<Option<LeaderAnnouncement>, StorageError> {
        self.read(move |txn, _| {
            read_json(
                &open_read(txn, LEADER_ANNOUNCEMENT)?,
                "leader_announcement",
                LEADER,
            )
        })
        .await
    }

    async fn shard_count(&self) -> Result<Option<u32>, StorageError> {
        self.read(move |txn, _| {
            let stored = open_read(txn, CLUSTER_META)?.get(SHARD_COUNT).map_err(e)?;
            Ok(stored.map(|count| count.value() as u32))
        })
        .await
    }

    async fn fix_shard_count(&self, count: u32) -> Result<u32, StorageError> {
        self.write(move |txn, _| {
            let mut table = open(txn, CLUSTER_META)?;
            let stored = table
                .get(SHARD_COUNT)
                .map_err(e)?
                .map(|count| count.value() as u32);
            if let Some(stored) = stored {
                return Ok(stored);
            }
            table.insert(SHARD_COUNT, u64::from(count)).map_err(e)?;
            Ok(count)
        })
        .await
    }

    async fn resharding(&self) -> Result<Option<Resharding>, StorageError> {
        self.read(move |txn, _| read_json(&open_read(txn, RESHARDINGS)?, "reshardings", CURRENT))
            .await
    }

    async fn put_resharding(&self, next: &Resharding) -> Result<Resharding, StorageError> {
        let next = next.clone();
        self.write(move |txn, _| {
            let mut records = open(txn, RESHARDINGS)?;
            let stored: Option<Resharding> = read_json(&records, "reshardings", CURRENT)?;
            let mut meta = open(txn, CLUSTER_META)?;
            let count = meta
                .get(SHARD_COUNT)
                .map_err(e)?
                .map(|count| count.value() as u32);
            crate::resharding::check_next(stored.as_ref(), count, &next)?;
            // One transaction: the count changes with the record that completes it.
            if next.phase == ReshardPhase::Completed {
                meta.insert(SHARD_COUNT, u64::from(next.to)).map_err(e)?;
            }
            let stored = Resharding {
                version: next.version + 1,
                ..next
            };
            records
                .insert(CURRENT, to_json(&stored).as_slice())
                .map_err(e)?;
            Ok(stored)
        })
        .await
    }
}
