//! Automod's shadow-mode hits on ScyllaDB: one partition per guild, each row and its
//! `user_refs` entry written in one batch with the same TTL (30 days from the hit).

use async_trait::async_trait;
use scylla::value::CqlValue;

use super::records::doc;
use super::{ScyllaStore, Writes, db_id, ttl};
use crate::automod::{check_hit, hit_expiry, hit_ref};
use crate::{AutomodHit, AutomodRepo, StorageError};

impl ScyllaStore {
    pub(super) async fn automod_hit(
        &self,
        guild_id: u64,
        message_id: u64,
        rule: &str,
    ) -> Result<Option<AutomodHit>, StorageError> {
        self.one_doc(
            "SELECT doc FROM {ks}.automod_hits WHERE guild_id = ? AND message_id = ? AND rule = ?",
            "automod_hits",
            (db_id(guild_id), db_id(message_id), rule),
        )
        .await
    }

    /// Removes one hit (its `user_refs` entry is the caller's).
    pub(super) async fn delete_hit(
        &self,
        guild_id: u64,
        message_id: u64,
        rule: &str,
    ) -> Result<(), StorageError> {
        self.execute(
            "DELETE FROM {ks}.automod_hits WHERE guild_id = ? AND message_id = ? AND rule = ?",
            true,
            (db_id(guild_id), db_id(message_id), rule),
        )
        .await
        .map(drop)
    }

    /// Removes every hit of `guild_id` (the bot left it) with its index entries; how many.
    pub(super) async fn delete_guild_hits(&self, guild_id: u64) -> Result<u64, StorageError> {
        let hits = self.automod_hits(guild_id, None, usize::MAX).await?;
        for hit in &hits {
            self.drop_ref(hit.user_id, &hit_ref(hit)).await?;
        }
        self.execute(
            "DELETE FROM {ks}.automod_hits WHERE guild_id = ?",
            true,
            (db_id(guild_id),),
        )
        .await?;
        Ok(hits.len() as u64)
    }
}

#[async_trait]
impl AutomodRepo for ScyllaStore {
    async fn put_automod_hit(&self, hit: &AutomodHit) -> Result<(), StorageError> {
        check_hit(hit)?;
        let Some(secs) = ttl(hit_expiry(hit)) else {
            return Ok(());
        };
        let mut writes = Writes::new();
        writes.push(
            self,
            "INSERT INTO {ks}.automod_hits (guild_id, message_id, rule, doc) \
             VALUES (?, ?, ?, ?) USING TTL ?",
            vec![
                CqlValue::BigInt(db_id(hit.guild_id)),
                CqlValue::BigInt(db_id(hit.message_id)),
                CqlValue::Text(hit.rule.clone()),
                CqlValue::Text(doc(hit)),
                CqlValue::Int(secs),
            ],
        );
        self.push_ref(&mut writes, hit.user_id, &hit_ref(hit), Some(secs));
        self.apply(writes).await
    }

    async fn automod_hits(
        &self,
        guild_id: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AutomodHit>, StorageError> {
        let before = before.map_or(i64::MAX, |b| db_id(b.min(i64::MAX as u64)));
        self.docs_limit(
            "SELECT doc FROM {ks}.automod_hits WHERE guild_id = ? AND message_id < ?",
            "automod_hits",
            (db_id(guild_id), before),
            limit,
        )
        .await
    }
}
