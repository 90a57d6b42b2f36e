//! Durable timers on redb: claims are read-compare-write inside one write transaction,
//! which redb runs one at a time.

use async_trait::async_trait;
use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};

use super::{e, from_json, index, open, open_read, to_json, unindex};
use crate::timers::{check_timer, timer_ref};
use crate::{EmbeddedStore, StorageError, Timer, TimerRepo, Timestamp};

/// (shard id, due ms, guild id, timer id) → [`Timer`].
pub(super) const TIMERS: TableDefinition<(u32, u64, u64, &str), &[u8]> =
    TableDefinition::new("timers");
/// (guild id, timer id) → (shard id, due ms): where a guild's timer is.
pub(super) const TIMERS_BY_GUILD: TableDefinition<(u64, &str), (u32, u64)> =
    TableDefinition::new("timers_by_guild");

pub(super) fn stored(
    txn: &WriteTransaction,
    guild_id: u64,
    id: &str,
) -> Result<Option<Timer>, StorageError> {
    let Some((shard, due)) = open(txn, TIMERS_BY_GUILD)?
        .get((guild_id, id))
        .map_err(e)?
        .map(|v| v.value())
    else {
        return Ok(None);
    };
    let table = open(txn, TIMERS)?;
    let row = table.get((shard, due, guild_id, id)).map_err(e)?;
    row.map(|v| from_json(format_args!("timers/{guild_id}/{id}"), v.value()))
        .transpose()
}

/// The guild's timer `id`, read outside a write.
pub(super) fn stored_in(
    txn: &ReadTransaction,
    guild_id: u64,
    id: &str,
) -> Result<Option<Timer>, StorageError> {
    let Some((shard, due)) = open_read(txn, TIMERS_BY_GUILD)?
        .get((guild_id, id))
        .map_err(e)?
        .map(|v| v.value())
    else {
        return Ok(None);
    };
    let table = open_read(txn, TIMERS)?;
    let row = table.get((shard, due, guild_id, id)).map_err(e)?;
    row.map(|v| from_json(format_args!("timers/{guild_id}/{id}"), v.value()))
        .transpose()
}

/// Removes a timer with its users' refs.
pub(super) fn remove(txn: &WriteTransaction, timer: &Timer) -> Result<(), StorageError> {
    unindex(txn, &timer_ref(timer), &timer.parties(), None)?;
    open(txn, TIMERS)?
        .remove((
            timer.shard_id,
            timer.due.0,
            timer.guild_id,
            timer.id.as_str(),
        ))
        .map_err(e)?;
    open(txn, TIMERS_BY_GUILD)?
        .remove((timer.guild_id, timer.id.as_str()))
        .map_err(e)?;
    Ok(())
}

fn write(txn: &WriteTransaction, timer: &Timer) -> Result<(), StorageError> {
    open(txn, TIMERS)?
        .insert(
            (
                timer.shard_id,
                timer.due.0,
                timer.guild_id,
                timer.id.as_str(),
            ),
            to_json(timer).as_slice(),
        )
        .map_err(e)?;
    open(txn, TIMERS_BY_GUILD)?
        .insert(
            (timer.guild_id, timer.id.as_str()),
            (timer.shard_id, timer.due.0),
        )
        .map_err(e)?;
    Ok(())
}

/// The erasure of `user_id` reached the guild's timer `id`: deleted, or kept without
/// naming or mentioning them ([`Timer::after_erasure_of`]). Whether there was one.
pub(super) fn erase_user(
    txn: &WriteTransaction,
    guild_id: u64,
    id: &str,
    user_id: u64,
) -> Result<bool, StorageError> {
    let Some(timer) = stored(txn, guild_id, id)? else {
        return Ok(false);
    };
    remove(txn, &timer)?;
    if let Some(kept) = timer.after_erasure_of(user_id) {
        index(txn, &timer_ref(&kept), &kept.parties(), None)?;
        write(txn, &kept)?;
    }
    Ok(true)
}

/// Removes every timer of `guild_id` (the bot left it); how many.
pub(super) fn delete_guild_timers(
    txn: &WriteTransaction,
    guild_id: u64,
) -> Result<u64, StorageError> {
    let ids: Vec<String> = {
        let index = open(txn, TIMERS_BY_GUILD)?;
        let mut ids = Vec::new();
        for entry in index
            .range((guild_id, "")..(guild_id.saturating_add(1), ""))
            .map_err(e)?
        {
            ids.push(entry.map_err(e)?.0.value().1.to_owned());
        }
        ids
    };
    let mut removed = 0;
    for id in ids {
        if let Some(timer) = stored(txn, guild_id, &id)? {
            remove(txn, &timer)?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[async_trait]
impl TimerRepo for EmbeddedStore {
    async fn put_timer(&self, timer: &Timer) -> Result<(), StorageError> {
        check_timer(timer)?;
        let mut timer = timer.clone();
        timer.claimed_by = None;
        timer.claimed_until = Timestamp(0);
        self.write(move |txn, _| {
            if let Some(old) = stored(txn, timer.guild_id, &timer.id)? {
                remove(txn, &old)?;
            }
            index(txn, &timer_ref(&timer), &timer.parties(), None)?;
            write(txn, &timer)
        })
        .await
    }

    async fn cancel_timer(&self, guild_id: u64, id: &str) -> Result<bool, StorageError> {
        let id = id.to_owned();
        self.write(move |txn, _| match stored(txn, guild_id, &id)? {
            Some(timer) => remove(txn, &timer).map(|()| true),
            None => Ok(false),
        })
        .await
    }

    async fn timers_of_guild(&self, guild_id: u64) -> Result<Vec<Timer>, StorageError> {
        self.read(move |txn, _| {
            let index = open_read(txn, TIMERS_BY_GUILD)?;
            let table = open_read(txn, TIMERS)?;
            let mut out: Vec<Timer> = Vec::new();
            for entry in index
                .range((guild_id, "")..(guild_id.saturating_add(1), ""))
                .map_err(e)?
            {
                let (key, place) = entry.map_err(e)?;
                let (_, id) = key.value();
                let (shard, due) = place.value();
                if let Some(row) = table.get((shard, due, guild_id, id)).map_err(e)? {
                    out.push(from_json(
                        format_args!("timers/{guild_id}/{id}"),
                        row.value(),
                    )?);
                }
            }
            out.sort_by(|a, b| (a.due, &a.id).cmp(&(b.due, &b.id)));
            Ok(out)
        })
        .await
    }

    async fn due_timers(
        &self,
        shard_id: u32,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Timer>, StorageError> {
        self.read(move |txn, _| {
            let table = open_read(txn, TIMERS)?;
            let mut out = Vec::new();
            for row in table
                .range((shard_id, 0, 0, "")..=(shard_id, now.0, u64::MAX, "\u{10FFFF}"))
                .map_err(e)?
            {
                if out.len() == limit {
                    break;
                }
                let (_, value) = row.map_err(e)?;
                let timer: Timer = from_json("timers", value.value())?;
                if timer.claimed_until <= now {
                    out.push(timer);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn claim_timer(
        &self,
        timer: &Timer,
        claimant: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool, StorageError> {
        let (guild_id, id, due) = (timer.guild_id, timer.id.clone(), timer.due);
        let claimant = claimant.to_owned();
        self.write(move |txn, _| {
            let Some(mut current) = stored(txn, guild_id, &id)? else {
                return Ok(false);
            };
            if current.due != due || current.claimed_until > now {
                return Ok(false);
            }
            current.claimed_by = Some(claimant);
            current.claimed_until = until;
            write(txn, &current)?;
            Ok(true)
        })
        .await
    }

    async fn complete_timer(
        &self,
        guild_id: u64,
        id: &str,
        claimant: &str,
    ) -> Result<bool, StorageError> {
        let (id, claimant) = (id.to_owned(), claimant.to_owned());
        self.write(move |txn, _| {
            let Some(current) = stored(txn, guild_id, &id)? else {
                return Ok(false);
            };
            if current.claimed_by.as_deref() != Some(claimant.as_str()) {
                return Ok(false);
            }
            remove(txn, &current)?;
            Ok(true)
        })
        .await
    }
}
