//! The webhook inbox and premium slots on redb: each call is one write transaction, so the
//! dedupe, the "only newer" rule and the one-holder-per-guild rule are atomic.

use async_trait::async_trait;
use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::records::write_subscription;
use super::{SUBSCRIPTIONS, e, from_json, index, open, open_read, to_json, unindex};
use crate::premium::{anonymised_event, event_expiry, event_ref};
use crate::{
    EmbeddedStore, InboxEvent, PremiumRepo, PremiumSlot, Retention, SlotAdded, StorageError,
    Subscription,
};

/// event id → [`InboxEvent`].
pub(super) const INBOX: TableDefinition<&str, &[u8]> = TableDefinition::new("billing_inbox");
/// (received at ms, event id) → (): the events not processed yet.
const INBOX_PENDING: TableDefinition<(u64, &str), ()> =
    TableDefinition::new("billing_inbox_pending");
/// (user id, guild id) → [`PremiumSlot`].
pub(super) const SLOTS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("premium_slots");
/// guild id → the user whose slot holds it.
const SLOT_GUILDS: TableDefinition<u64, u64> = TableDefinition::new("premium_slot_guilds");

pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), StorageError> {
    open(txn, INBOX)?;
    open(txn, INBOX_PENDING)?;
    open(txn, SLOTS)?;
    open(txn, SLOT_GUILDS)?;
    Ok(())
}

fn slot(
    table: &impl ReadableTable<(u64, u64), &'static [u8]>,
    user_id: u64,
    guild_id: u64,
) -> Result<Option<PremiumSlot>, StorageError> {
    let row = table.get((user_id, guild_id)).map_err(e)?;
    row.map(|v| from_json("premium_slots", v.value()))
        .transpose()
}

/// Stores `new` as the guild's slot, replacing an ended slot of another user; `false` (and
/// nothing written) while another user's slot on the guild lasts.
fn store_slot(txn: &WriteTransaction, new: &PremiumSlot) -> Result<bool, StorageError> {
    let mut guilds = open(txn, SLOT_GUILDS)?;
    let holder = guilds.get(new.guild_id).map_err(e)?.map(|v| v.value());
    let mut slots = open(txn, SLOTS)?;
    if let Some(holder) = holder
        && holder != new.user_id
    {
        if let Some(old) = slot(&slots, holder, new.guild_id)?
            && old.until > new.assigned_at
        {
            return Ok(false);
        }
        slots.remove((holder, new.guild_id)).map_err(e)?;
    }
    slots
        .insert((new.user_id, new.guild_id), to_json(new).as_slice())
        .map_err(e)?;
    guilds.insert(new.guild_id, new.user_id).map_err(e)?;
    Ok(true)
}

fn stored_event(
    txn: &WriteTransaction,
    event_id: &str,
) -> Result<Option<InboxEvent>, StorageError> {
    let inbox = open(txn, INBOX)?;
    let row = inbox.get(event_id).map_err(e)?;
    row.map(|v| from_json("billing_inbox", v.value()))
        .transpose()
}

/// The index entries of an event: its user's ref, and its expiry once processed.
pub(super) fn event_index(
    event: &InboxEvent,
    retention: &Retention,
) -> (Vec<u64>, Option<crate::Timestamp>) {
    let expires = event
        .outcome
        .is_some()
        .then(|| event_expiry(event, retention));
    (event.user_id.into_iter().collect(), expires)
}

/// Stores `event` in place of `old` (if any), with its index entries.
fn write_event(
    txn: &WriteTransaction,
    old: Option<&InboxEvent>,
    event: &InboxEvent,
    retention: &Retention,
) -> Result<(), StorageError> {
    if let Some(old) = old {
        let (users, expires) = event_index(old, retention);
        unindex(txn, &event_ref(old), &users, expires)?;
    }
    open(txn, INBOX)?
        .insert(event.event_id.as_str(), to_json(event).as_slice())
        .map_err(e)?;
    let mut pending = open(txn, INBOX_PENDING)?;
    let key = (event.received_at.0, event.event_id.as_str());
    if event.outcome.is_none() {
        pending.insert(key, ()).map_err(e)?;
    } else {
        pending.remove(key).map_err(e)?;
    }
    let (users, expires) = event_index(event, retention);
    index(txn, &event_ref(event), &users, expires)
}

/// Retention or the guild-less sweep: the event goes, with its index entries.
pub(super) fn remove_event(
    txn: &WriteTransaction,
    event_id: &str,
    retention: &Retention,
) -> Result<bool, StorageError> {
    let Some(event) = stored_event(txn, event_id)? else {
        return Ok(false);
    };
    let (users, expires) = event_index(&event, retention);
    unindex(txn, &event_ref(&event), &users, expires)?;
    open(txn, INBOX)?.remove(event_id).map_err(e)?;
    open(txn, INBOX_PENDING)?
        .remove((event.received_at.0, event_id))
        .map_err(e)?;
    Ok(true)
}

/// Erasure of the event's user: kept without the body and the user (the id still
/// deduplicates a redelivery), processed if it was pending, until its retention.
pub(super) fn erase_event_user(
    txn: &WriteTransaction,
    event_id: &str,
    retention: &Retention,
) -> Result<bool, StorageError> {
    let Some(event) = stored_event(txn, event_id)? else {
        return Ok(false);
    };
    write_event(
        txn,
        Some(&event),
        &anonymised_event(event.clone()),
        retention,
    )?;
    Ok(true)
}

/// Erasure: the user's slots go (the guilds lose the premium they gave).
pub(super) fn remove_slots_of(txn: &WriteTransaction, user_id: u64) -> Result<u64, StorageError> {
    let guilds: Vec<u64> = {
        let table = open(txn, SLOTS)?;
        let mut guilds = Vec::new();
        for row in table.range((user_id, 0)..=(user_id, u64::MAX)).map_err(e)? {
            guilds.push(row.map_err(e)?.0.value().1);
        }
        guilds
    };
    let mut slot_guilds = open(txn, SLOT_GUILDS)?;
    let mut slots = open(txn, SLOTS)?;
    for &guild in &guilds {
        slots.remove((user_id, guild)).map_err(e)?;
        if slot_guilds.get(guild).map_err(e)?.map(|v| v.value()) == Some(user_id) {
            slot_guilds.remove(guild).map_err(e)?;
        }
    }
    Ok(guilds.len() as u64)
}

/// Erasure of a guild the bot left: the slot on it is freed (its user may assign it again).
pub(super) fn remove_guild_slot(
    txn: &WriteTransaction,
    guild_id: u64,
) -> Result<u64, StorageError> {
    let Some(holder) = open(txn, SLOT_GUILDS)?
        .remove(guild_id)
        .map_err(e)?
        .map(|v| v.value())
    else {
        return Ok(0);
    };
    let removed = open(txn, SLOTS)?
        .remove((holder, guild_id))
        .map_err(e)?
        .is_some();
    Ok(u64::from(removed))
}

#[async_trait]
impl PremiumRepo for EmbeddedStore {
    async fn receive_event(&self, event: &InboxEvent) -> Result<bool, StorageError> {
        let event = event.clone();
        self.write(move |txn, retention| {
            if stored_event(txn, &event.event_id)?.is_some() {
                return Ok(false);
            }
            write_event(txn, None, &event, retention)?;
            Ok(true)
        })
        .await
    }

    async fn pending_events(&self, limit: usize) -> Result<Vec<InboxEvent>, StorageError> {
        self.read(move |txn, _| {
            let pending = open_read(txn, INBOX_PENDING)?;
            let inbox = open_read(txn, INBOX)?;
            let mut out = Vec::new();
            for row in pending.iter().map_err(e)?.take(limit) {
                let (key, _) = row.map_err(e)?;
                let (_, id) = key.value();
                if let Some(v) = inbox.get(id).map_err(e)? {
                    out.push(from_json("billing_inbox", v.value())?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn inbox_event(&self, event_id: &str) -> Result<Option<InboxEvent>, StorageError> {
        let event_id = event_id.to_owned();
        self.read(move |txn, _| {
            let row = open_read(txn, INBOX)?.get(event_id.as_str()).map_err(e)?;
            row.map(|v| from_json("billing_inbox", v.value()))
                .transpose()
        })
        .await
    }

    async fn finish_event(&self, event_id: &str, outcome: &str) -> Result<(), StorageError> {
        let (event_id, outcome) = (event_id.to_owned(), outcome.to_owned());
        self.write(move |txn, retention| {
            let Some(stored) = stored_event(txn, &event_id)? else {
                return Ok(());
            };
            let finished = InboxEvent {
                body: None,
                outcome: Some(outcome),
                ..stored.clone()
            };
            write_event(txn, Some(&stored), &finished, retention)
        })
        .await
    }

    async fn apply_subscription(&self, subscription: &Subscription) -> Result<bool, StorageError> {
        let subscription = subscription.clone();
        self.write(move |txn, _| {
            let stored: Option<Subscription> = open(txn, SUBSCRIPTIONS)?
                .get(subscription.subscription_id)
                .map_err(e)?
                .map(|v| from_json("subscriptions", v.value()))
                .transpose()?;
            if stored.is_some_and(|stored| stored.updated_at >= subscription.updated_at) {
                return Ok(false);
            }
            write_subscription(txn, &subscription)?;
            Ok(true)
        })
        .await
    }

    async fn put_slot(&self, new: &PremiumSlot) -> Result<(), StorageError> {
        let new = new.clone();
        self.write(move |txn, _| {
            if store_slot(txn, &new)? {
                Ok(())
            } else {
                Err(StorageError::Invalid(format!(
                    "guild {} is premium through another user's slot",
                    new.guild_id
                )))
            }
        })
        .await
    }

    async fn add_slot(&self, new: &PremiumSlot, held: usize) -> Result<SlotAdded, StorageError> {
        let new = new.clone();
        self.write(move |txn, _| {
            let mut others = 0;
            for row in open(txn, SLOTS)?
                .range((new.user_id, 0)..=(new.user_id, u64::MAX))
                .map_err(e)?
            {
                let (key, _) = row.map_err(e)?;
                others += usize::from(key.value().1 != new.guild_id);
            }
            if others > held {
                return Ok(SlotAdded::SlotsChanged);
            }
            Ok(if store_slot(txn, &new)? {
                SlotAdded::Added
            } else {
                SlotAdded::GuildTaken
            })
        })
        .await
    }

    async fn remove_slot(&self, user_id: u64, guild_id: u64) -> Result<bool, StorageError> {
        self.write(move |txn, _| {
            let removed = open(txn, SLOTS)?
                .remove((user_id, guild_id))
                .map_err(e)?
                .is_some();
            let mut guilds = open(txn, SLOT_GUILDS)?;
            if guilds.get(guild_id).map_err(e)?.map(|v| v.value()) == Some(user_id) {
                guilds.remove(guild_id).map_err(e)?;
            }
            Ok(removed)
        })
        .await
    }

    async fn slots_of_user(&self, user_id: u64) -> Result<Vec<PremiumSlot>, StorageError> {
        self.read(move |txn, _| slots_of(txn, user_id)).await
    }

    async fn guild_slot(&self, guild_id: u64) -> Result<Option<PremiumSlot>, StorageError> {
        self.read(move |txn, _| {
            let Some(holder) = open_read(txn, SLOT_GUILDS)?
                .get(guild_id)
                .map_err(e)?
                .map(|v| v.value())
            else {
                return Ok(None);
            };
            slot(&open_read(txn, SLOTS)?, holder, guild_id)
        })
        .await
    }
}

/// A user's slots, oldest first: [`PremiumRepo::slots_of_user`], and their data export.
pub(super) fn slots_of(
    txn: &redb::ReadTransaction,
    user_id: u64,
) -> Result<Vec<PremiumSlot>, StorageError> {
    let table = open_read(txn, SLOTS)?;
    let mut out: Vec<PremiumSlot> = Vec::new();
    for row in table.range((user_id, 0)..=(user_id, u64::MAX)).map_err(e)? {
        let (_, v) = row.map_err(e)?;
        out.push(from_json("premium_slots", v.value())?);
    }
    out.sort_by_key(|slot| (slot.assigned_at, slot.guild_id));
    Ok(out)
}
