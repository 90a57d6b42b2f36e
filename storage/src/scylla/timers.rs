//! Durable timers on ScyllaDB: a shard's timers in one partition ordered by due time; a
//! claim is an LWT on `claimed_until`, completion an LWT delete on `claimed_by`.

use async_trait::async_trait;

use super::records::{doc, parse};
use crate::scylla::{db_id, rust_id};
use crate::timers::check_timer;
use crate::{ScyllaStore, StorageError, Timer, TimerRepo, Timestamp};

type TimerRow = (Option<String>, Option<String>, Option<i64>);

fn timer_of(row: TimerRow) -> Result<Option<Timer>, StorageError> {
    let (Some(text), claimed_by, claimed_until) = row else {
        return Ok(None);
    };
    let mut timer: Timer = parse("timers", &text)?;
    timer.claimed_by = claimed_by;
    timer.claimed_until = Timestamp(claimed_until.map_or(0, rust_id));
    Ok(Some(timer))
}

impl ScyllaStore {
    /// Removes every timer of `guild_id` (the bot left it); how many.
    pub(super) async fn delete_guild_timers(&self, guild_id: u64) -> Result<u64, StorageError> {
        let timers = self.timers_of_guild(guild_id).await?;
        for timer in &timers {
            let shard = i32::try_from(timer.shard_id).unwrap_or(i32::MAX);
            self.remove_timer(guild_id, &timer.id, (shard, db_id(timer.due.0)))
                .await?;
        }
        Ok(timers.len() as u64)
    }

    /// Where the guild's timer `id` is: (shard, due ms).
    async fn timer_place(
        &self,
        guild_id: u64,
        id: &str,
    ) -> Result<Option<(i32, i64)>, StorageError> {
        let rows: Vec<(Option<i32>, Option<i64>)> = self
            .select_limit(
                "SELECT shard_id, due_ms FROM {ks}.timers_by_guild WHERE guild_id = ? AND id = ?",
                (db_id(guild_id), id),
                1,
            )
            .await?;
        Ok(rows
            .into_iter()
            .next()
            .and_then(|(shard, due)| Some((shard?, due?))))
    }

    async fn timer_at(
        &self,
        (shard, due): (i32, i64),
        guild_id: u64,
        id: &str,
        serial: bool,
    ) -> Result<Option<Timer>, StorageError> {
        const SELECT: &str = "SELECT doc, claimed_by, claimed_until FROM {ks}.timers \
                              WHERE shard_id = ? AND due_ms = ? AND guild_id = ? AND id = ?";
        let values = (shard, due, db_id(guild_id), id);
        let row: Option<TimerRow> = if serial {
            self.serial_one(SELECT, values).await?
        } else {
            self.select_limit(SELECT, values, 1)
                .await?
                .into_iter()
                .next()
        };
        row.map(timer_of).transpose().map(Option::flatten)
    }

    async fn remove_timer(
        &self,
        guild_id: u64,
        id: &str,
        place: (i32, i64),
    ) -> Result<(), StorageError> {
        self.execute(
            "DELETE FROM {ks}.timers WHERE shard_id = ? AND due_ms = ? AND guild_id = ? AND id = ?",
            true,
            (place.0, place.1, db_id(guild_id), id),
        )
        .await?;
        self.execute(
            "DELETE FROM {ks}.timers_by_guild WHERE guild_id = ? AND id = ?",
            true,
            (db_id(guild_id), id),
        )
        .await?;
        Ok(())
    }
}

/// A timer's document: what it is, without its claim (kept in columns, for the LWTs).
fn timer_doc(timer: &Timer) -> String {
    let mut bare = timer.clone();
    bare.claimed_by = None;
    bare.claimed_until = Timestamp(0);
    doc(&bare)
}

#[async_trait]
impl TimerRepo for ScyllaStore {
    async fn put_timer(&self, timer: &Timer) -> Result<(), StorageError> {
        check_timer(timer)?;
        let shard = i32::try_from(timer.shard_id)
            .map_err(|_| StorageError::Invalid("shard id out of range".into()))?;
        let due = db_id(timer.due.0);
        if let Some(old) = self.timer_place(timer.guild_id, &timer.id).await?
            && old != (shard, due)
        {
            self.remove_timer(timer.guild_id, &timer.id, old).await?;
        }
        // Row first, then the index that finds it by guild.
        self.execute(
            "INSERT INTO {ks}.timers (shard_id, due_ms, guild_id, id, doc, claimed_by, \
             claimed_until) VALUES (?, ?, ?, ?, ?, null, 0)",
            true,
            (
                shard,
                due,
                db_id(timer.guild_id),
                timer.id.as_str(),
                timer_doc(timer),
            ),
        )
        .await?;
        self.execute(
            "INSERT INTO {ks}.timers_by_guild (guild_id, id, shard_id, due_ms) VALUES (?, ?, ?, ?)",
            true,
            (db_id(timer.guild_id), timer.id.as_str(), shard, due),
        )
        .await?;
        Ok(())
    }

    async fn cancel_timer(&self, guild_id: u64, id: &str) -> Result<bool, StorageError> {
        let Some(place) = self.timer_place(guild_id, id).await? else {
            return Ok(false);
        };
        let existed = self.timer_at(place, guild_id, id, false).await?.is_some();
        self.remove_timer(guild_id, id, place).await?;
        Ok(existed)
    }

    async fn timers_of_guild(&self, guild_id: u64) -> Result<Vec<Timer>, StorageError> {
        let places: Vec<(String, Option<i32>, Option<i64>)> = self
            .select(
                "SELECT id, shard_id, due_ms FROM {ks}.timers_by_guild WHERE guild_id = ?",
                (db_id(guild_id),),
            )
            .await?;
        let mut out = Vec::new();
        for (id, shard, due) in places {
            let (Some(shard), Some(due)) = (shard, due) else {
                continue;
            };
            out.extend(self.timer_at((shard, due), guild_id, &id, false).await?);
        }
        out.sort_by(|a, b| (a.due, &a.id).cmp(&(b.due, &b.id)));
        Ok(out)
    }

    async fn due_timers(
        &self,
        shard_id: u32,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Timer>, StorageError> {
        let shard = i32::try_from(shard_id)
            .map_err(|_| StorageError::Invalid("shard id out of range".into()))?;
        let rows: Vec<TimerRow> = self
            .select(
                "SELECT doc, claimed_by, claimed_until FROM {ks}.timers \
                 WHERE shard_id = ? AND due_ms <= ?",
                (shard, db_id(now.0)),
            )
            .await?;
        let mut out = Vec::new();
        for row in rows {
            if out.len() == limit {
                break;
            }
            if let Some(timer) = timer_of(row)?
                && timer.claimed_until <= now
            {
                out.push(timer);
            }
        }
        Ok(out)
    }

    async fn claim_timer(
        &self,
        timer: &Timer,
        claimant: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool, StorageError> {
        let shard = i32::try_from(timer.shard_id)
            .map_err(|_| StorageError::Invalid("shard id out of range".into()))?;
        let place = (shard, db_id(timer.due.0));
        let resolve = || async {
            Ok(self
                .timer_at(place, timer.guild_id, &timer.id, true)
                .await?
                .is_some_and(|t| {
                    t.claimed_by.as_deref() == Some(claimant) && t.claimed_until == until
                }))
        };
        // On a missing row the condition is false: a completed or moved timer is not taken.
        let outcome = self
            .lwt_resolved(
                "UPDATE {ks}.timers SET claimed_by = ?, claimed_until = ? \
                 WHERE shard_id = ? AND due_ms = ? AND guild_id = ? AND id = ? \
                 IF claimed_until <= ?",
                (
                    claimant,
                    db_id(until.0),
                    place.0,
                    place.1,
                    db_id(timer.guild_id),
                    timer.id.as_str(),
                    db_id(now.0),
                ),
                resolve,
            )
            .await?;
        Ok(outcome.applied)
    }

    async fn complete_timer(
        &self,
        guild_id: u64,
        id: &str,
        claimant: &str,
    ) -> Result<bool, StorageError> {
        let Some(place) = self.timer_place(guild_id, id).await? else {
            return Ok(false);
        };
        let resolve = || async { Ok(self.timer_at(place, guild_id, id, true).await?.is_none()) };
        let outcome = self
            .lwt_resolved(
                "DELETE FROM {ks}.timers \
                 WHERE shard_id = ? AND due_ms = ? AND guild_id = ? AND id = ? \
                 IF claimed_by = ?",
                (place.0, place.1, db_id(guild_id), id, claimant),
                resolve,
            )
            .await?;
        if outcome.applied {
            self.execute(
                "DELETE FROM {ks}.timers_by_guild WHERE guild_id = ? AND id = ?",
                true,
                (db_id(guild_id), id),
            )
            .await?;
        }
        Ok(outcome.applied)
    }
}
