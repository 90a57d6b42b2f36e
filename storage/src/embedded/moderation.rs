//! Moderation cases on redb: the counter and the case are written in one transaction, and
//! redb runs one write transaction at a time, so a number is never given twice.

use async_trait::async_trait;
use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::{e, from_json, index, open, open_read, to_json, unindex};
use crate::moderation::{case_expiry, case_ref, case_users, check_case, check_reason};
use crate::{Case, EmbeddedStore, ModerationRepo, Retention, StorageError};

/// (guild id, number) → [`Case`].
pub(super) const CASES: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("cases");
/// guild id → the last number given.
pub(super) const CASE_COUNTERS: TableDefinition<u64, u64> = TableDefinition::new("case_counters");
/// (guild id, target id, number) → ().
pub(super) const CASES_BY_TARGET: TableDefinition<(u64, u64, u64), ()> =
    TableDefinition::new("cases_by_target");

fn read_case(
    table: &impl ReadableTable<(u64, u64), &'static [u8]>,
    guild_id: u64,
    number: u64,
) -> Result<Option<Case>, StorageError> {
    let row = table.get((guild_id, number)).map_err(e)?;
    row.map(|v| from_json(format_args!("cases/{guild_id}/{number}"), v.value()))
        .transpose()
}

/// Removes every case of `guild_id` (the bot left it); how many.
pub(super) fn delete_guild_cases(
    txn: &WriteTransaction,
    guild_id: u64,
    retention: &Retention,
) -> Result<u64, StorageError> {
    let mut removed = Vec::new();
    {
        let mut table = open(txn, CASES)?;
        for item in table
            .extract_from_if((guild_id, 0)..=(guild_id, u64::MAX), |_, _| true)
            .map_err(e)?
        {
            let (_, value) = item.map_err(e)?;
            removed.push(from_json::<Case>("cases", value.value())?);
        }
    }
    for case in &removed {
        let expires = Some(case_expiry(case, retention));
        unindex(txn, &case_ref(case), &case_users(case), expires)?;
    }
    open(txn, CASES_BY_TARGET)?
        .retain_in((guild_id, 0, 0)..=(guild_id, u64::MAX, u64::MAX), |_, _| {
            false
        })
        .map_err(e)?;
    // The counter stays: a guild that returns must not reuse numbers its mod-log showed.
    Ok(removed.len() as u64)
}

/// Removes case `number` of `guild_id` past its retention, with its index entries; whether
/// it was there. The counter stays.
pub(super) fn remove_case(
    txn: &WriteTransaction,
    guild_id: u64,
    number: u64,
    retention: &Retention,
) -> Result<bool, StorageError> {
    let Some(case) = read_case(&open(txn, CASES)?, guild_id, number)? else {
        return Ok(false);
    };
    open(txn, CASES)?.remove((guild_id, number)).map_err(e)?;
    if let Some(target) = case.target_id {
        open(txn, CASES_BY_TARGET)?
            .remove((guild_id, target, number))
            .map_err(e)?;
    }
    let expires = Some(case_expiry(&case, retention));
    unindex(txn, &case_ref(&case), &case_users(&case), expires)?;
    Ok(true)
}

/// Keeps case `number` of `guild_id` without `user_id` (erased): moderator or target
/// becomes [`ERASED_USER`](crate::privacy::ERASED_USER), and so do their refs and its
/// place among the target's cases. Whether there was such a case.
pub(super) fn anonymise_case(
    txn: &WriteTransaction,
    guild_id: u64,
    number: u64,
    user_id: u64,
) -> Result<bool, StorageError> {
    let Some(case) = read_case(&open(txn, CASES)?, guild_id, number)? else {
        return Ok(false);
    };
    let kept = crate::privacy::anonymised_case(case.clone(), user_id);
    let row = case_ref(&case);
    unindex(txn, &row, &case_users(&case), None)?;
    open(txn, CASES)?
        .insert((guild_id, number), to_json(&kept).as_slice())
        .map_err(e)?;
    index(txn, &row, &case_users(&kept), None)?;
    if case.target_id != kept.target_id {
        let mut by_target = open(txn, CASES_BY_TARGET)?;
        if let Some(target) = case.target_id {
            by_target.remove((guild_id, target, number)).map_err(e)?;
        }
        if let Some(target) = kept.target_id {
            by_target
                .insert((guild_id, target, number), ())
                .map_err(e)?;
        }
    }
    Ok(true)
}

#[async_trait]
impl ModerationRepo for EmbeddedStore {
    async fn create_case(&self, case: &Case) -> Result<u64, StorageError> {
        check_case(case)?;
        let mut case = case.clone();
        self.write(move |txn, retention| {
            let mut counters = open(txn, CASE_COUNTERS)?;
            let last = counters
                .get(case.guild_id)
                .map_err(e)?
                .map_or(0, |v| v.value());
            case.number = last + 1;
            counters.insert(case.guild_id, case.number).map_err(e)?;
            open(txn, CASES)?
                .insert((case.guild_id, case.number), to_json(&case).as_slice())
                .map_err(e)?;
            if let Some(target) = case.target_id {
                open(txn, CASES_BY_TARGET)?
                    .insert((case.guild_id, target, case.number), ())
                    .map_err(e)?;
            }
            let expires = Some(case_expiry(&case, retention));
            index(txn, &case_ref(&case), &case_users(&case), expires)?;
            Ok(case.number)
        })
        .await
    }

    async fn case(&self, guild_id: u64, number: u64) -> Result<Option<Case>, StorageError> {
        self.read(move |txn, _| read_case(&open_read(txn, CASES)?, guild_id, number))
            .await
    }

    async fn cases_about(
        &self,
        guild_id: u64,
        target_id: u64,
        limit: usize,
    ) -> Result<Vec<Case>, StorageError> {
        self.read(move |txn, _| {
            let index = open_read(txn, CASES_BY_TARGET)?;
            let table = open_read(txn, CASES)?;
            let mut out = Vec::new();
            for entry in index
                .range((guild_id, target_id, 0)..=(guild_id, target_id, u64::MAX))
                .map_err(e)?
                .rev()
                .take(limit)
            {
                let (key, _) = entry.map_err(e)?;
                let (_, _, number) = key.value();
                out.extend(read_case(&table, guild_id, number)?);
            }
            Ok(out)
        })
        .await
    }

    async fn cases(
        &self,
        guild_id: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Case>, StorageError> {
        self.read(move |txn, _| {
            let table = open_read(txn, CASES)?;
            let end = before.unwrap_or(u64::MAX);
            let mut out = Vec::new();
            for row in table
                .range((guild_id, 0)..(guild_id, end))
                .map_err(e)?
                .rev()
                .take(limit)
            {
                let (key, value) = row.map_err(e)?;
                let (_, number) = key.value();
                out.push(from_json(
                    format_args!("cases/{guild_id}/{number}"),
                    value.value(),
                )?);
            }
            Ok(out)
        })
        .await
    }

    async fn set_case_reason(
        &self,
        guild_id: u64,
        number: u64,
        reason: &str,
    ) -> Result<bool, StorageError> {
        check_reason(reason)?;
        let reason = reason.to_owned();
        self.write(move |txn, _| {
            let mut table = open(txn, CASES)?;
            let Some(mut case) = read_case(&table, guild_id, number)? else {
                return Ok(false);
            };
            case.reason = reason;
            table
                .insert((guild_id, number), to_json(&case).as_slice())
                .map_err(e)?;
            Ok(true)
        })
        .await
    }
}
