//! The webhook inbox and premium slots on ScyllaDB. The inbox's dedupe and the "only newer"
//! rule of subscriptions are LWTs (compare-and-set on the document); slots are plain writes
//! behind a read of the guild's holder.

use async_trait::async_trait;
use scylla::value::CqlValue;

use super::records::{doc, parse};
use super::{ScyllaStore, Writes, db_id, rust_id, ttl};
use crate::premium::{anonymised_event, event_expiry, event_ref};
use crate::row_ref::RowRef;
use crate::{InboxEvent, PremiumRepo, PremiumSlot, StorageError, Subscription};

/// Compare-and-set loops give up after this many lost races.
const CAS_TRIES: usize = 16;

impl ScyllaStore {
    /// Stores a processed (or erased) event in place, to expire with its retention: the row
    /// and its user's ref by TTL; past it, the event goes now.
    async fn keep_processed(&self, event: &InboxEvent) -> Result<(), StorageError> {
        let Some(secs) = ttl(event_expiry(event, self.retention())) else {
            return self.remove_event(&event.event_id).await.map(|_| ());
        };
        if let Some(user) = event.user_id {
            self.add_ref(user, &event_ref(event), Some(secs)).await?;
        }
        self.execute(
            "INSERT INTO {ks}.billing_inbox (event_id, doc) VALUES (?, ?) USING TTL ?",
            true,
            (event.event_id.as_str(), doc(event), secs),
        )
        .await?;
        self.execute(
            "DELETE FROM {ks}.billing_inbox_pending \
             WHERE part = 0 AND received_at = ? AND event_id = ?",
            true,
            (db_id(event.received_at.0), event.event_id.as_str()),
        )
        .await?;
        Ok(())
    }

    /// Removes an event, its pending entry and its user's ref; whether it was stored.
    pub(super) async fn remove_event(&self, event_id: &str) -> Result<bool, StorageError> {
        let Some(event) = self.inbox_doc(event_id).await? else {
            return Ok(false);
        };
        self.execute(
            "DELETE FROM {ks}.billing_inbox WHERE event_id = ?",
            true,
            (event_id,),
        )
        .await?;
        self.execute(
            "DELETE FROM {ks}.billing_inbox_pending \
             WHERE part = 0 AND received_at = ? AND event_id = ?",
            true,
            (db_id(event.received_at.0), event_id),
        )
        .await?;
        if let Some(user) = event.user_id {
            self.drop_ref(user, &event_ref(&event)).await?;
        }
        Ok(true)
    }

    /// Erasure of the event's user: kept without body and user (the id still deduplicates a
    /// redelivery), processed if it was pending, until its retention. The caller drops the
    /// user's ref.
    pub(super) async fn erase_event_user(&self, event_id: &str) -> Result<bool, StorageError> {
        let Some(event) = self.inbox_doc(event_id).await? else {
            return Ok(false);
        };
        self.keep_processed(&anonymised_event(event)).await?;
        Ok(true)
    }

    pub(super) async fn inbox_doc(
        &self,
        event_id: &str,
    ) -> Result<Option<InboxEvent>, StorageError> {
        self.one_doc(
            "SELECT doc FROM {ks}.billing_inbox WHERE event_id = ?",
            "billing_inbox",
            (event_id,),
        )
        .await
    }

    async fn subscription_serial(&self, id: u64) -> Result<Option<String>, StorageError> {
        let row: Option<(Option<String>,)> = self
            .serial_one(
                "SELECT doc FROM {ks}.subscriptions WHERE subscription_id = ?",
                (db_id(id),),
            )
            .await?;
        Ok(row.and_then(|(text,)| text))
    }

    async fn holder(&self, guild_id: u64) -> Result<Option<u64>, StorageError> {
        let rows: Vec<(Option<i64>,)> = self
            .select_limit(
                "SELECT user_id FROM {ks}.premium_slot_guilds WHERE guild_id = ?",
                (db_id(guild_id),),
                1,
            )
            .await?;
        Ok(rows.into_iter().next().and_then(|(u,)| u).map(rust_id))
    }

    async fn slot_doc(
        &self,
        user_id: u64,
        guild_id: u64,
    ) -> Result<Option<PremiumSlot>, StorageError> {
        self.one_doc(
            "SELECT doc FROM {ks}.premium_slots WHERE user_id = ? AND guild_id = ?",
            "premium_slots",
            (db_id(user_id), db_id(guild_id)),
        )
        .await
    }
}

#[async_trait]
impl PremiumRepo for ScyllaStore {
    async fn receive_event(&self, event: &InboxEvent) -> Result<bool, StorageError> {
        let text = doc(event);
        // The user's ref first, so that an erasure finds the event as soon as it exists.
        if let Some(user) = event.user_id {
            self.add_ref(user, &event_ref(event), None).await?;
        }
        if event.outcome.is_none() {
            // Pending first: a listed id whose row was never written is skipped by readers.
            self.execute(
                "INSERT INTO {ks}.billing_inbox_pending (part, received_at, event_id) \
                 VALUES (0, ?, ?)",
                true,
                (db_id(event.received_at.0), event.event_id.as_str()),
            )
            .await?;
        }
        let resolve =
            || async { Ok(self.inbox_doc(&event.event_id).await?.as_ref() == Some(event)) };
        let lwt = self
            .lwt_resolved(
                "INSERT INTO {ks}.billing_inbox (event_id, doc) VALUES (?, ?) IF NOT EXISTS",
                (event.event_id.as_str(), text.as_str()),
                resolve,
            )
            .await?;
        if !lwt.applied && event.outcome.is_none() {
            // A duplicate: the first delivery's pending entry is the one that counts.
            self.execute(
                "DELETE FROM {ks}.billing_inbox_pending \
                 WHERE part = 0 AND received_at = ? AND event_id = ?",
                true,
                (db_id(event.received_at.0), event.event_id.as_str()),
            )
            .await?;
        }
        Ok(lwt.applied)
    }

    async fn pending_events(&self, limit: usize) -> Result<Vec<InboxEvent>, StorageError> {
        let ids: Vec<(i64, String)> = self
            .select_limit(
                "SELECT received_at, event_id FROM {ks}.billing_inbox_pending WHERE part = 0",
                (),
                limit,
            )
            .await?;
        let mut out = Vec::new();
        for (_, id) in ids {
            if let Some(event) = self.inbox_doc(&id).await?
                && event.outcome.is_none()
            {
                out.push(event);
            }
        }
        Ok(out)
    }

    async fn inbox_event(&self, event_id: &str) -> Result<Option<InboxEvent>, StorageError> {
        self.inbox_doc(event_id).await
    }

    async fn finish_event(&self, event_id: &str, outcome: &str) -> Result<(), StorageError> {
        let Some(mut event) = self.inbox_doc(event_id).await? else {
            return Ok(());
        };
        event.body = None;
        event.outcome = Some(outcome.to_owned());
        self.keep_processed(&event).await
    }

    async fn apply_subscription(&self, subscription: &Subscription) -> Result<bool, StorageError> {
        let id = subscription.subscription_id;
        let new = doc(subscription);
        // The user's index entry first, so that erasure finds the row as soon as it exists.
        let mut writes = Writes::new();
        self.push_ref(
            &mut writes,
            subscription.user_id,
            &RowRef::Subscription { id },
            None,
        );
        if let Some(guild) = subscription.guild_id {
            writes.push(
                self,
                "INSERT INTO {ks}.subscriptions_by_guild (guild_id, subscription_id) VALUES (?, ?)",
                vec![CqlValue::BigInt(db_id(guild)), CqlValue::BigInt(db_id(id))],
            );
        }
        self.apply(writes).await?;
        for _ in 0..CAS_TRIES {
            let current = self.subscription_serial(id).await?;
            let resolve = || async {
                Ok(self.subscription_serial(id).await?.as_deref() == Some(new.as_str()))
            };
            let lwt = match &current {
                Some(text) => {
                    let stored: Subscription = parse("subscriptions", text)?;
                    if stored.updated_at >= subscription.updated_at {
                        return Ok(false);
                    }
                    self.lwt_resolved(
                        "UPDATE {ks}.subscriptions SET doc = ? WHERE subscription_id = ? IF doc = ?",
                        (new.as_str(), db_id(id), text.as_str()),
                        resolve,
                    )
                    .await?
                }
                None => {
                    self.lwt_resolved(
                        "INSERT INTO {ks}.subscriptions (subscription_id, doc) VALUES (?, ?) \
                         IF NOT EXISTS",
                        (db_id(id), new.as_str()),
                        resolve,
                    )
                    .await?
                }
            };
            if lwt.applied {
                return Ok(true);
            }
        }
        Err(StorageError::Database(format!(
            "subscription {id}: too many concurrent updates"
        )))
    }

    async fn put_slot(&self, new: &PremiumSlot) -> Result<(), StorageError> {
        if let Some(holder) = self.holder(new.guild_id).await?
            && holder != new.user_id
        {
            if let Some(old) = self.slot_doc(holder, new.guild_id).await?
                && old.until > new.assigned_at
            {
                return Err(StorageError::Invalid(format!(
                    "guild {} is premium through another user's slot",
                    new.guild_id
                )));
            }
            self.execute(
                "DELETE FROM {ks}.premium_slots WHERE user_id = ? AND guild_id = ?",
                true,
                (db_id(holder), db_id(new.guild_id)),
            )
            .await?;
        }
        let mut writes = Writes::new();
        writes.push(
            self,
            "INSERT INTO {ks}.premium_slots (user_id, guild_id, doc) VALUES (?, ?, ?)",
            vec![
                CqlValue::BigInt(db_id(new.user_id)),
                CqlValue::BigInt(db_id(new.guild_id)),
                CqlValue::Text(doc(new)),
            ],
        );
        writes.push(
            self,
            "INSERT INTO {ks}.premium_slot_guilds (guild_id, user_id) VALUES (?, ?)",
            vec![
                CqlValue::BigInt(db_id(new.guild_id)),
                CqlValue::BigInt(db_id(new.user_id)),
            ],
        );
        self.apply(writes).await
    }

    async fn remove_slot(&self, user_id: u64, guild_id: u64) -> Result<bool, StorageError> {
        let existed = self.slot_doc(user_id, guild_id).await?.is_some();
        self.execute(
            "DELETE FROM {ks}.premium_slots WHERE user_id = ? AND guild_id = ?",
            true,
            (db_id(user_id), db_id(guild_id)),
        )
        .await?;
        if self.holder(guild_id).await? == Some(user_id) {
            self.execute(
                "DELETE FROM {ks}.premium_slot_guilds WHERE guild_id = ?",
                true,
                (db_id(guild_id),),
            )
            .await?;
        }
        Ok(existed)
    }

    async fn slots_of_user(&self, user_id: u64) -> Result<Vec<PremiumSlot>, StorageError> {
        let rows: Vec<(String,)> = self
            .select(
                "SELECT doc FROM {ks}.premium_slots WHERE user_id = ?",
                (db_id(user_id),),
            )
            .await?;
        let mut out = rows
            .iter()
            .map(|(text,)| parse("premium_slots", text))
            .collect::<Result<Vec<PremiumSlot>, _>>()?;
        out.sort_by_key(|slot| (slot.assigned_at, slot.guild_id));
        Ok(out)
    }

    async fn guild_slot(&self, guild_id: u64) -> Result<Option<PremiumSlot>, StorageError> {
        match self.holder(guild_id).await? {
            Some(holder) => self.slot_doc(holder, guild_id).await,
            None => Ok(None),
        }
    }
}
