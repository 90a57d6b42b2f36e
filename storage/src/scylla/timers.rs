//! Durable timers on ScyllaDB: a shard's timers in one partition ordered by due time; a
//! claim is an LWT on `claimed_until`, completion an LWT delete on `claimed_by`.

use async_trait::async_trait;

use super::records::{doc, parse};
use crate::scylla::{db_id, rust_id};
use crate::timers::{check_timer, timer_ref};
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
            let place = (shard, db_id(timer.due.0));
            self.remove_timer(guild_id, &timer.id, place, &timer.parties())
                .await?;
        }
        Ok(timers.len() as u64)
    }

    /// The guild's timer `id`, if stored.
    pub(super) async fn timer(
        &self,
        guild_id: u64,
        id: &str,
    ) -> Result<Option<Timer>, StorageError> {
        match self.timer_place(guild_id, id).await? {
            Some(place) => self.timer_at(place, guild_id, id, false).await,
            None => Ok(None),
        }
    }

    /// The erasure of `user_id` reached the guild's timer `id`: deleted, or kept without
    /// naming or mentioning them ([`Timer::after_erasure_of`]; the caller drops the user's
    /// ref). Whether there was one.
    pub(super) async fn erase_timer_user(
        &self,
        guild_id: u64,
        id: &str,
        user_id: u64,
    ) -> Result<bool, StorageError> {
        let Some(place) = self.timer_place(guild_id, id).await? else {
            return Ok(false);
        };
        let Some(stored) = self.timer_at(place, guild_id, id, false).await? else {
            return Ok(false);
        };
        let Some(timer) = stored.after_erasure_of(user_id) else {
            self.remove_timer(guild_id, id, place, &stored.parties())
                .await?;
            return Ok(true);
        };
        // Conditional like the claims on this row, so a timer completed meanwhile is not
        // brought back; only the document changes, the claim stays.
        let resolve = || async {
            Ok(self
                .timer_at(place, guild_id, id, true)
                .await?
                .is_none_or(|t| !t.parties().contains(&user_id)))
        };
        self.lwt_resolved(
            "UPDATE {ks}.timers SET doc = ? \
             WHERE shard_id = ? AND due_ms = ? AND guild_id = ? AND id = ? IF EXISTS",
            (timer_doc(&timer), place.0, place.1, db_id(guild_id), id),
            resolve,
        )
        .await?;
        Ok(true)
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

    /// Removes a timer's row, its place in the guild's index and its users' refs.
    async fn remove_timer(
        &self,
        guild_id: u64,
        id: &str,
        place: (i32, i64),
        users: &[u64],
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
        // Refs last: a ref whose timer is gone is skipped on read; a timer without its ref
        // would escape its user's erasure.
        let row = crate::row_ref::RowRef::Timer {
            guild: guild_id,
            id: id.to_owned(),
        };
        for &user in users {
            self.drop_ref(user, &row).await?;
        }
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
        if let Some(place) = self.timer_place(timer.guild_id, &timer.id).await? {
            let old = self
                .timer_at(place, timer.guild_id, &timer.id, false)
                .await?;
            let parties = timer.parties();
            let mut gone = old.map(|old| old.parties()).unwrap_or_default();
            gone.retain(|user| !parties.contains(user));
            if place != (shard, due) {
                self.remove_timer(timer.guild_id, &timer.id, place, &gone)
                    .await?;
            } else {
                for &user in &gone {
                    self.drop_ref(user, &timer_ref(timer)).await?;
                }
            }
        }
        // Refs first (a ref without its timer is skipped on read), then the row, then the
        // index that finds it by guild.
        for user in timer.parties() {
            self.add_ref(user, &timer_ref(timer), None).await?;
        }
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
        let stored = self.timer_at(place, guild_id, id, false).await?;
        let users = stored.as_ref().map(Timer::parties).unwrap_or_default();
        self.remove_timer(guild_id, id, place, &users).await?;
        Ok(stored.is_some())
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
        // Read first: the users whose refs go with it.
        let users = self
            .timer_at(place, guild_id, id, false)
            .await?
            .map(|timer| timer.parties())
            .unwrap_or_default();
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
            let row = crate::row_ref::RowRef::Timer {
                guild: guild_id,
                id: id.to_owned(),
            };
            for user in users {
                self.drop_ref(user, &row).await?;
            }
        }
        Ok(outcome.applied)
    }
}
