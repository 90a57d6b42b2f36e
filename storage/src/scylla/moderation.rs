//! Moderation cases on ScyllaDB: the number comes from an LWT on the guild's counter row,
//! then the case (and its target index row) is written idempotently under it.

use async_trait::async_trait;

use super::records::{doc, parse};
use crate::moderation::{case_expiry, case_ref, case_users, check_case, check_reason};
use crate::scylla::{db_id, rust_id, ttl};
use crate::{Case, ModerationRepo, ScyllaStore, StorageError};

/// Tries at the counter before giving up: each lost race means another case was numbered,
/// so this many in a row only happen under a flood of actions in one guild.
const COUNTER_TRIES: usize = 32;

impl ScyllaStore {
    /// The TTL of a case's rows: what is left of its retention (a second when none is).
    pub(super) fn case_ttl(&self, case: &Case) -> i32 {
        ttl(case_expiry(case, self.retention())).unwrap_or(1)
    }

    /// Removes every case of `guild_id` (the bot left it); how many. The counter stays: a
    /// guild that returns never reuses a number its mod-log showed.
    pub(super) async fn delete_guild_cases(&self, guild_id: u64) -> Result<u64, StorageError> {
        let cases = self.cases(guild_id, None, usize::MAX).await?;
        for case in &cases {
            for user in case_users(case) {
                self.drop_ref(user, &case_ref(case)).await?;
            }
        }
        let mut targets: Vec<u64> = cases.iter().filter_map(|case| case.target_id).collect();
        targets.sort_unstable();
        targets.dedup();
        for target in targets {
            self.execute(
                "DELETE FROM {ks}.cases_by_target WHERE guild_id = ? AND target_id = ?",
                true,
                (db_id(guild_id), db_id(target)),
            )
            .await?;
        }
        self.execute(
            "DELETE FROM {ks}.cases WHERE guild_id = ?",
            true,
            (db_id(guild_id),),
        )
        .await?;
        Ok(cases.len() as u64)
    }

    /// Keeps case `number` of `guild_id` without `user_id` (erased): moderator or target
    /// becomes [`ERASED_USER`](crate::privacy::ERASED_USER), and so do their refs and its
    /// place among the target's cases. Whether there was such a case.
    pub(super) async fn anonymise_case(
        &self,
        guild_id: u64,
        number: u64,
        user_id: u64,
    ) -> Result<bool, StorageError> {
        let Some(case) = self.case(guild_id, number).await? else {
            return Ok(false);
        };
        let kept = crate::privacy::anonymised_case(case.clone(), user_id);
        let row = case_ref(&kept);
        self.write_case(&kept).await?;
        if let Some(target) = case.target_id.filter(|&t| Some(t) != kept.target_id) {
            self.execute(
                "DELETE FROM {ks}.cases_by_target WHERE guild_id = ? AND target_id = ? AND number = ?",
                true,
                (db_id(guild_id), db_id(target), db_id(number)),
            )
            .await?;
        }
        for user in case_users(&case) {
            if !case_users(&kept).contains(&user) {
                self.drop_ref(user, &row).await?;
            }
        }
        Ok(true)
    }

    /// Writes a numbered case, its target's index row and its users' refs, all to expire
    /// with its retention. Index first: an index row without its case is skipped on read,
    /// and a user ref without its row is skipped by export and dropped by erasure.
    pub(super) async fn write_case(&self, case: &Case) -> Result<(), StorageError> {
        let secs = self.case_ttl(case);
        self.write_case_index(case, secs).await?;
        self.execute(
            "INSERT INTO {ks}.cases (guild_id, number, doc) VALUES (?, ?, ?) USING TTL ?",
            true,
            (db_id(case.guild_id), db_id(case.number), doc(case), secs),
        )
        .await?;
        Ok(())
    }

    /// A case's users' refs and its target's index row, to expire in `secs`.
    pub(super) async fn write_case_index(
        &self,
        case: &Case,
        secs: i32,
    ) -> Result<(), StorageError> {
        for user in case_users(case) {
            self.add_ref(user, &case_ref(case), Some(secs)).await?;
        }
        if let Some(target) = case.target_id {
            self.execute(
                "INSERT INTO {ks}.cases_by_target (guild_id, target_id, number) VALUES (?, ?, ?) \
                 USING TTL ?",
                true,
                (
                    db_id(case.guild_id),
                    db_id(target),
                    db_id(case.number),
                    secs,
                ),
            )
            .await?;
        }
        Ok(())
    }

    /// The guild's next number of a per-guild counter, taken by compare-and-set on its row.
    pub(super) async fn next_number(
        &self,
        counter: &Counter,
        guild_id: u64,
    ) -> Result<u64, StorageError> {
        for _ in 0..COUNTER_TRIES {
            let row: Option<(Option<i64>,)> = self
                .serial_one(counter.read_last, (db_id(guild_id),))
                .await?;
            let last = row.and_then(|(last,)| last).map_or(0, rust_id);
            let next = last + 1;
            let holder = format!("{:016x}", random_token());
            let resolve = || async {
                let row: Option<(Option<i64>, Option<String>)> = self
                    .serial_one(counter.read_holder, (db_id(guild_id),))
                    .await?;
                Ok(row.is_some_and(|(last, by)| {
                    last == Some(db_id(next)) && by.as_deref() == Some(holder.as_str())
                }))
            };
            let outcome = if last == 0 {
                self.lwt_resolved(
                    counter.create,
                    (db_id(guild_id), db_id(next), holder.as_str()),
                    resolve,
                )
                .await?
            } else {
                self.lwt_resolved(
                    counter.advance,
                    (db_id(next), holder.as_str(), db_id(guild_id), db_id(last)),
                    resolve,
                )
                .await?
            };
            if outcome.applied {
                return Ok(next);
            }
        }
        Err(StorageError::Unavailable {
            kind: "overloaded",
            attempts: COUNTER_TRIES as u32,
            message: format!(
                "{} of guild {guild_id} contended {COUNTER_TRIES} times",
                counter.what
            ),
        })
    }
}

/// The statements of a per-guild counter table (`guild_id`, `last`, `holder`).
pub(super) struct Counter {
    pub(super) what: &'static str,
    pub(super) read_last: &'static str,
    pub(super) read_holder: &'static str,
    pub(super) create: &'static str,
    pub(super) advance: &'static str,
}

const CASE_COUNTER: Counter = Counter {
    what: "case counter",
    read_last: "SELECT last FROM {ks}.case_counters WHERE guild_id = ?",
    read_holder: "SELECT last, holder FROM {ks}.case_counters WHERE guild_id = ?",
    create: "INSERT INTO {ks}.case_counters (guild_id, last, holder) VALUES (?, ?, ?) \
             IF NOT EXISTS",
    advance: "UPDATE {ks}.case_counters SET last = ?, holder = ? WHERE guild_id = ? \
              IF last = ?",
};

/// Ticket numbers (schema 013).
pub(super) const TICKET_COUNTER: Counter = Counter {
    what: "ticket counter",
    read_last: "SELECT last FROM {ks}.ticket_counters WHERE guild_id = ?",
    read_holder: "SELECT last, holder FROM {ks}.ticket_counters WHERE guild_id = ?",
    create: "INSERT INTO {ks}.ticket_counters (guild_id, last, holder) VALUES (?, ?, ?) \
             IF NOT EXISTS",
    advance: "UPDATE {ks}.ticket_counters SET last = ?, holder = ? WHERE guild_id = ? \
              IF last = ?",
};

/// A value no other writer picks: std's per-instance random hash keys.
fn random_token() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

#[async_trait]
impl ModerationRepo for ScyllaStore {
    async fn create_case(&self, case: &Case) -> Result<u64, StorageError> {
        check_case(case)?;
        let mut case = case.clone();
        case.number = self.next_number(&CASE_COUNTER, case.guild_id).await?;
        self.write_case(&case).await?;
        Ok(case.number)
    }

    async fn case(&self, guild_id: u64, number: u64) -> Result<Option<Case>, StorageError> {
        let rows: Vec<(Option<String>,)> = self
            .select_limit(
                "SELECT doc FROM {ks}.cases WHERE guild_id = ? AND number = ?",
                (db_id(guild_id), db_id(number)),
                1,
            )
            .await?;
        match rows.into_iter().next() {
            Some((Some(text),)) => Ok(Some(parse("cases", &text)?)),
            _ => Ok(None),
        }
    }

    async fn cases_about(
        &self,
        guild_id: u64,
        target_id: u64,
        limit: usize,
    ) -> Result<Vec<Case>, StorageError> {
        let numbers: Vec<(i64,)> = self
            .select_limit(
                "SELECT number FROM {ks}.cases_by_target WHERE guild_id = ? AND target_id = ?",
                (db_id(guild_id), db_id(target_id)),
                limit,
            )
            .await?;
        let mut out = Vec::new();
        for (number,) in numbers {
            out.extend(self.case(guild_id, rust_id(number)).await?);
        }
        Ok(out)
    }

    async fn cases(
        &self,
        guild_id: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Case>, StorageError> {
        let before = before.map_or(i64::MAX, |b| db_id(b.min(i64::MAX as u64)));
        let rows: Vec<(Option<String>,)> = self
            .select_limit(
                "SELECT doc FROM {ks}.cases WHERE guild_id = ? AND number < ?",
                (db_id(guild_id), before),
                limit,
            )
            .await?;
        rows.into_iter()
            .filter_map(|(text,)| text)
            .map(|text| parse("cases", &text))
            .collect()
    }

    async fn set_case_reason(
        &self,
        guild_id: u64,
        number: u64,
        reason: &str,
    ) -> Result<bool, StorageError> {
        check_reason(reason)?;
        let Some(mut case) = self.case(guild_id, number).await? else {
            return Ok(false);
        };
        case.reason = reason.to_owned();
        self.execute(
            "UPDATE {ks}.cases USING TTL ? SET doc = ? WHERE guild_id = ? AND number = ?",
            true,
            (
                self.case_ttl(&case),
                doc(&case),
                db_id(guild_id),
                db_id(number),
            ),
        )
        .await?;
        Ok(true)
    }
}
