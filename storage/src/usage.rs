use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::StorageError;

/// How many times a command ran in one channel of a guild in one hour. Usage is counted
/// per command, never per user: no row names who ran it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UsageCount {
    pub guild_id: u64,
    /// UTC hours since the epoch ([`Timestamp::hour`](crate::Timestamp::hour)).
    pub hour: u32,
    pub command: String,
    pub channel_id: u64,
    pub count: u64,
}

impl UsageCount {
    /// The UTC day (since the epoch) of its hour: the partition and retention unit.
    pub fn day(&self) -> u32 {
        self.hour / 24
    }
}

/// Command usage counters. Callers increment in process ([`UsageAggregator`]) and flush sums
/// here in batches; a counter row is never written per invocation.
///
/// [`UsageAggregator`]: crate::UsageAggregator
#[async_trait]
pub trait UsageRepo: Send + Sync + 'static {
    /// Adds each delta's `count` to its counter. Not idempotent: a retried call counts twice;
    /// [`add_usage_flush`](Self::add_usage_flush) is what retries use.
    async fn add_usage(&self, deltas: &[UsageCount]) -> Result<(), StorageError>;

    /// [`add_usage`](Self::add_usage) as flush `flush_id`: writing the same flush again
    /// (a retry after an error that may have left all or part of it applied) counts it once.
    /// The default, for stores that cannot tell, is `add_usage`.
    async fn add_usage_flush(
        &self,
        flush_id: u64,
        deltas: &[UsageCount],
    ) -> Result<(), StorageError> {
        let _ = flush_id;
        self.add_usage(deltas).await
    }

    /// All counters of `guild_id` for days `from_day..=to_day`, ordered by hour, command and
    /// channel. Days past the usage retention are gone.
    async fn usage(
        &self,
        guild_id: u64,
        from_day: u32,
        to_day: u32,
    ) -> Result<Vec<UsageCount>, StorageError>;
}
