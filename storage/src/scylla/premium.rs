//! The webhook inbox and premium slots on ScyllaDB. The inbox's dedupe and the "only newer"
//! rule of subscriptions are LWTs (compare-and-set on the document).
//!
//! A slot is assigned in two LWTs, in this order, so that concurrent assignments never give a
//! user more slots than they counted nor a guild two holders:
//! 1. in the user's partition of `premium_slots`, one conditional batch writes the slot and
//!    moves the user's assignment count (the row of guild 0, [`ASSIGNMENTS`]) on from the value
//!    read with their slots: of two assignments counted against the same slots, one applies;
//! 2. the guild's holder (`premium_slot_guilds`) is claimed by `IF NOT EXISTS`, or taken over
//!    by compare-and-set from a holder whose slot has ended or does not exist. Since the slot
//!    is written first, a claim always finds the slot of a holder that is half-way through its
//!    own assignment, and never takes over a live one. An assignment that loses the guild
//!    removes the slot it wrote.
//!
//! Renewals rewrite a slot's document with a plain write: a renewal lost to a concurrent
//! removal is made again by the next refresh.

use async_trait::async_trait;
use futures_util::TryStreamExt;
use scylla::value::CqlValue;

use super::records::{doc, parse};
use super::{ScyllaStore, Writes, db_id, rust_id, ttl};
use crate::premium::{anonymised_event, event_expiry, event_ref};
use crate::row_ref::RowRef;
use crate::{InboxEvent, PremiumRepo, PremiumSlot, SlotAdded, StorageError, Subscription};

/// Compare-and-set loops give up after this many lost races.
const CAS_TRIES: usize = 16;

/// The row of a user's `premium_slots` partition that counts their assignments, its document
/// the count in decimal (no guild has id 0). Only LWTs write it.
const ASSIGNMENTS: i64 = 0;

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

    /// The slot's document at SERIAL: what an LWT on it resolves with.
    async fn slot_serial(
        &self,
        user_id: u64,
        guild_id: u64,
    ) -> Result<Option<String>, StorageError> {
        let row: Option<(Option<String>,)> = self
            .serial_one(
                "SELECT doc FROM {ks}.premium_slots WHERE user_id = ? AND guild_id = ?",
                (db_id(user_id), db_id(guild_id)),
            )
            .await?;
        Ok(row.and_then(|(text,)| text))
    }

    async fn holder_serial(&self, guild_id: u64) -> Result<Option<u64>, StorageError> {
        let row: Option<(Option<i64>,)> = self
            .serial_one(
                "SELECT user_id FROM {ks}.premium_slot_guilds WHERE guild_id = ?",
                (db_id(guild_id),),
            )
            .await?;
        Ok(row.and_then(|(user,)| user).map(rust_id))
    }

    /// The user's assignment count and how many slots they hold on guilds other than
    /// `guild_id`, in one SERIAL read of their partition.
    async fn assignments(
        &self,
        user_id: u64,
        guild_id: u64,
    ) -> Result<(Option<String>, usize), StorageError> {
        let rows: Vec<(i64, Option<String>)> = self
            .rows(
                "SELECT guild_id, doc FROM {ks}.premium_slots WHERE user_id = ?",
                (db_id(user_id),),
                true,
            )
            .await?
            .try_collect()
            .await?;
        let mut count = None;
        let mut others = 0;
        for (guild, text) in rows {
            if guild == ASSIGNMENTS {
                count = text;
            } else if guild != db_id(guild_id) {
                others += 1;
            }
        }
        Ok((count, others))
    }

    /// Writes `new` in its user's partition if their assignment count is still `count`,
    /// moving it on; whether it applied.
    async fn add_counted(
        &self,
        new: &PremiumSlot,
        count: Option<String>,
    ) -> Result<bool, StorageError> {
        let (user, guild, text) = (db_id(new.user_id), db_id(new.guild_id), doc(new));
        let resolve = || async {
            Ok(self
                .slot_serial(new.user_id, new.guild_id)
                .await?
                .as_deref()
                == Some(text.as_str()))
        };
        let insert = "INSERT INTO {ks}.premium_slots (user_id, guild_id, doc) VALUES (?, ?, ?)";
        let lwt = match count {
            None => {
                self.lwt_batch(
                    &[
                        "INSERT INTO {ks}.premium_slots (user_id, guild_id, doc) \
                         VALUES (?, 0, '1') IF NOT EXISTS",
                        insert,
                    ],
                    ((user,), (user, guild, text.as_str())),
                    resolve,
                )
                .await?
            }
            Some(count) => {
                let next = parse::<u64>("premium_slots", &count)? + 1;
                self.lwt_batch(
                    &[
                        "UPDATE {ks}.premium_slots SET doc = ? \
                         WHERE user_id = ? AND guild_id = 0 IF doc = ?",
                        insert,
                    ],
                    (
                        (next.to_string(), user, count.as_str()),
                        (user, guild, text.as_str()),
                    ),
                    resolve,
                )
                .await?
            }
        };
        Ok(lwt.applied)
    }

    /// Makes `new.user_id` the guild's holder unless another user's slot on it lasts: a holder
    /// whose slot has ended (removed here) or does not exist is replaced by compare-and-set.
    async fn claim_guild(&self, new: &PremiumSlot) -> Result<bool, StorageError> {
        let (user, guild) = (db_id(new.user_id), db_id(new.guild_id));
        let resolve = || async { Ok(self.holder_serial(new.guild_id).await? == Some(new.user_id)) };
        for _ in 0..CAS_TRIES {
            let lwt = self
                .lwt_resolved(
                    "INSERT INTO {ks}.premium_slot_guilds (guild_id, user_id) VALUES (?, ?) \
                     IF NOT EXISTS",
                    (guild, user),
                    resolve,
                )
                .await?;
            if lwt.applied {
                return Ok(true);
            }
            // Resolved by a read (no columns) or the holder left meanwhile: look again.
            let Some(holder) = lwt.bigint("user_id").map(rust_id) else {
                continue;
            };
            if holder == new.user_id {
                return Ok(true);
            }
            let old = self.slot_doc(holder, new.guild_id).await?;
            if old.as_ref().is_some_and(|old| old.until > new.assigned_at) {
                return Ok(false);
            }
            let lwt = self
                .lwt_resolved(
                    "UPDATE {ks}.premium_slot_guilds SET user_id = ? WHERE guild_id = ? \
                     IF user_id = ?",
                    (user, guild, db_id(holder)),
                    resolve,
                )
                .await?;
            if lwt.applied {
                if old.is_some() {
                    self.drop_slot(holder, new.guild_id).await?;
                }
                return Ok(true);
            }
        }
        Err(StorageError::Database(format!(
            "guild {}: too many concurrent premium assignments",
            new.guild_id
        )))
    }

    /// Removes one slot document; whether it was there.
    async fn drop_slot(&self, user_id: u64, guild_id: u64) -> Result<bool, StorageError> {
        let resolve = || async { Ok(self.slot_serial(user_id, guild_id).await?.is_none()) };
        let lwt = self
            .lwt_resolved(
                "DELETE FROM {ks}.premium_slots WHERE user_id = ? AND guild_id = ? IF EXISTS",
                (db_id(user_id), db_id(guild_id)),
                resolve,
            )
            .await?;
        Ok(lwt.applied)
    }

    /// Erasure: the user's assignment count, once their slots are gone.
    pub(super) async fn forget_assignments(&self, user_id: u64) -> Result<(), StorageError> {
        self.drop_slot(user_id, rust_id(ASSIGNMENTS))
            .await
            .map(|_| ())
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
        // The slot before the guild, as an assignment does (see the module's doc).
        self.execute(
            "INSERT INTO {ks}.premium_slots (user_id, guild_id, doc) VALUES (?, ?, ?)",
            true,
            (db_id(new.user_id), db_id(new.guild_id), doc(new)),
        )
        .await?;
        if self.claim_guild(new).await? {
            return Ok(());
        }
        self.drop_slot(new.user_id, new.guild_id).await?;
        Err(StorageError::Invalid(format!(
            "guild {} is premium through another user's slot",
            new.guild_id
        )))
    }

    async fn add_slot(&self, new: &PremiumSlot, held: usize) -> Result<SlotAdded, StorageError> {
        let (count, others) = self.assignments(new.user_id, new.guild_id).await?;
        if others > held || !self.add_counted(new, count).await? {
            return Ok(SlotAdded::SlotsChanged);
        }
        if self.claim_guild(new).await? {
            return Ok(SlotAdded::Added);
        }
        self.drop_slot(new.user_id, new.guild_id).await?;
        Ok(SlotAdded::GuildTaken)
    }

    async fn remove_slot(&self, user_id: u64, guild_id: u64) -> Result<bool, StorageError> {
        let existed = self.drop_slot(user_id, guild_id).await?;
        // Only the user's own claim: another user may have taken the guild over meanwhile.
        let resolve = || async { Ok(self.holder_serial(guild_id).await? != Some(user_id)) };
        self.lwt_resolved(
            "DELETE FROM {ks}.premium_slot_guilds WHERE guild_id = ? IF user_id = ?",
            (db_id(guild_id), db_id(user_id)),
            resolve,
        )
        .await?;
        Ok(existed)
    }

    async fn slots_of_user(&self, user_id: u64) -> Result<Vec<PremiumSlot>, StorageError> {
        let rows: Vec<(i64, String)> = self
            .select(
                "SELECT guild_id, doc FROM {ks}.premium_slots WHERE user_id = ?",
                (db_id(user_id),),
            )
            .await?;
        let mut out = rows
            .iter()
            .filter(|(guild, _)| *guild != ASSIGNMENTS)
            .map(|(_, text)| parse("premium_slots", text))
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
