//! Automod's shadow-mode hits on redb: one row per (guild, message, rule), indexed by its
//! author and by its expiry, so export, erasure and the retention sweep find it.

use async_trait::async_trait;
use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::{e, from_json, index, open, open_read, to_json, unindex};
use crate::automod::{check_hit, hit_expiry, hit_ref};
use crate::{AutomodHit, AutomodRepo, EmbeddedStore, StorageError, Timestamp};

/// (guild id, message id, rule) → [`AutomodHit`].
pub(super) const AUTOMOD_HITS: TableDefinition<(u64, u64, &str), &[u8]> =
    TableDefinition::new("automod_hits");

/// Removes one hit and its index entries; whether it was there.
pub(super) fn remove_hit(
    txn: &WriteTransaction,
    guild_id: u64,
    message_id: u64,
    rule: &str,
) -> Result<bool, StorageError> {
    let old: Option<AutomodHit> = open(txn, AUTOMOD_HITS)?
        .remove((guild_id, message_id, rule))
        .map_err(e)?
        .map(|v| from_json("automod_hits", v.value()))
        .transpose()?;
    let Some(old) = old else { return Ok(false) };
    unindex(txn, &hit_ref(&old), &[old.user_id], Some(hit_expiry(&old)))?;
    Ok(true)
}

/// Removes every hit of `guild_id` (the bot left it); how many.
pub(super) fn delete_guild_hits(
    txn: &WriteTransaction,
    guild_id: u64,
) -> Result<u64, StorageError> {
    let mut removed = Vec::new();
    {
        let mut table = open(txn, AUTOMOD_HITS)?;
        for item in table
            .extract_from_if(
                (guild_id, 0, "")..=(guild_id, u64::MAX, "\u{10FFFF}"),
                |_, _| true,
            )
            .map_err(e)?
        {
            let (_, value) = item.map_err(e)?;
            removed.push(from_json::<AutomodHit>("automod_hits", value.value())?);
        }
    }
    for hit in &removed {
        unindex(txn, &hit_ref(hit), &[hit.user_id], Some(hit_expiry(hit)))?;
    }
    Ok(removed.len() as u64)
}

/// Every stored hit, for the consistency check.
pub(super) fn all_hits(txn: &redb::ReadTransaction) -> Result<Vec<AutomodHit>, StorageError> {
    let mut out = Vec::new();
    for item in open_read(txn, AUTOMOD_HITS)?.iter().map_err(e)? {
        out.push(from_json("automod_hits", item.map_err(e)?.1.value())?);
    }
    Ok(out)
}

#[async_trait]
impl AutomodRepo for EmbeddedStore {
    async fn put_automod_hit(&self, hit: &AutomodHit) -> Result<(), StorageError> {
        check_hit(hit)?;
        if hit_expiry(hit) <= Timestamp::now() {
            return Ok(());
        }
        let hit = hit.clone();
        self.write(move |txn, _| {
            remove_hit(txn, hit.guild_id, hit.message_id, &hit.rule)?;
            open(txn, AUTOMOD_HITS)?
                .insert(
                    (hit.guild_id, hit.message_id, hit.rule.as_str()),
                    to_json(&hit).as_slice(),
                )
                .map_err(e)?;
            index(txn, &hit_ref(&hit), &[hit.user_id], Some(hit_expiry(&hit)))
        })
        .await
    }

    async fn automod_hits(
        &self,
        guild_id: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AutomodHit>, StorageError> {
        self.read(move |txn, _| {
            let table = open_read(txn, AUTOMOD_HITS)?;
            let end = before.unwrap_or(u64::MAX);
            let now = Timestamp::now();
            let mut out = Vec::new();
            for row in table
                .range((guild_id, 0, "")..(guild_id, end, ""))
                .map_err(e)?
                .rev()
            {
                if out.len() == limit {
                    break;
                }
                let hit: AutomodHit = from_json("automod_hits", row.map_err(e)?.1.value())?;
                // Past retention but not swept yet: gone as far as readers know.
                if hit_expiry(&hit) > now {
                    out.push(hit);
                }
            }
            Ok(out)
        })
        .await
    }
}
