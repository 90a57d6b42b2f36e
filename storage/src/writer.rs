//! Write-behind for the high-volume tables: the audit batcher, the usage aggregator and the
//! retention sweeper. All three work on the repository traits, so both backends get them.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::{AuditEntry, AuditRepo, DataRights, StorageError, Timestamp, UsageCount, UsageRepo};

/// Settings of an [`AuditWriter`].
#[derive(Clone, Copy, Debug)]
pub struct WriterConfig {
    /// Entries per commit at most. One fsync costs about as much as thousands of small rows,
    /// so large batches are what make ≥ 50k rows/s possible.
    pub max_batch: usize,
    /// How long the first entry of a batch may wait for company before the commit.
    pub max_delay: Duration,
    /// Entries queued at most; [`AuditWriter::try_log`] fails beyond this.
    pub queue: usize,
    /// Tries per batch on transient errors (appends are idempotent, so retrying is safe).
    pub attempts: u32,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            max_batch: 4_096,
            max_delay: Duration::from_millis(20),
            queue: 65_536,
            attempts: 3,
        }
    }
}

type AckSender = oneshot::Sender<Result<(), String>>;

enum Command {
    Entry(AuditEntry, Option<AckSender>),
    Flush(AckSender),
}

/// Resolves when the entry it was handed out for is durable.
#[derive(Debug)]
pub struct Ack(oneshot::Receiver<Result<(), String>>);

impl Ack {
    pub async fn durable(self) -> Result<(), StorageError> {
        match self.0.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(StorageError::Database(message)),
            Err(_) => Err(StorageError::WriterClosed),
        }
    }
}

/// Batches audit entries from many tasks into few commits.
///
/// Cloneable handle in front of one writer task. Dropping every handle drains the queue,
/// writes what is left and ends the task.
#[derive(Clone, Debug)]
pub struct AuditWriter {
    tx: mpsc::Sender<Command>,
}

impl AuditWriter {
    pub fn spawn(repo: Arc<dyn AuditRepo>, config: WriterConfig) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let task = tokio::spawn(run_audit_writer(repo, config, rx));
        (Self { tx }, task)
    }

    /// Queues `entry`, waiting for room in the queue; the [`Ack`] resolves once it is durable.
    pub async fn log(&self, entry: AuditEntry) -> Result<Ack, StorageError> {
        let (ack, rx) = oneshot::channel();
        self.tx
            .send(Command::Entry(entry, Some(ack)))
            .await
            .map_err(|_| StorageError::WriterClosed)?;
        Ok(Ack(rx))
    }

    /// Queues `entry` without waiting: for callers that must never block (a guild actor
    /// logging an action). Fails when the queue is full; the caller counts the drop.
    pub fn try_log(&self, entry: AuditEntry) -> Result<(), StorageError> {
        self.tx
            .try_send(Command::Entry(entry, None))
            .map_err(|err| match err {
                mpsc::error::TrySendError::Full(_) => StorageError::QueueFull,
                mpsc::error::TrySendError::Closed(_) => StorageError::WriterClosed,
            })
    }

    /// Returns once everything queued before the call is durable.
    pub async fn flush(&self) -> Result<(), StorageError> {
        let (ack, rx) = oneshot::channel();
        self.tx
            .send(Command::Flush(ack))
            .await
            .map_err(|_| StorageError::WriterClosed)?;
        Ack(rx).durable().await
    }
}

async fn run_audit_writer(
    repo: Arc<dyn AuditRepo>,
    config: WriterConfig,
    mut rx: mpsc::Receiver<Command>,
) {
    let mut batch = Vec::with_capacity(config.max_batch);
    let mut acks = Vec::new();
    while let Some(first) = rx.recv().await {
        // Returns true for a flush request, which ends the batch at once.
        let take = |command, batch: &mut Vec<AuditEntry>, acks: &mut Vec<AckSender>| match command {
            Command::Entry(entry, ack) => {
                batch.push(entry);
                acks.extend(ack);
                false
            }
            Command::Flush(ack) => {
                acks.push(ack);
                true
            }
        };
        let mut flush_now = take(first, &mut batch, &mut acks);
        let deadline = tokio::time::Instant::now() + config.max_delay;
        while batch.len() < config.max_batch && !flush_now {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(command)) => flush_now = take(command, &mut batch, &mut acks),
                Ok(None) | Err(_) => break,
            }
        }
        let mut result = Err(String::new());
        for attempt in 1..=config.attempts.max(1) {
            match repo.append_audit(&batch).await {
                Ok(()) => {
                    result = Ok(());
                    break;
                }
                Err(err) if err.is_transient() && attempt < config.attempts => {
                    tracing::warn!(%err, attempt, "audit batch failed, retrying");
                    tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                }
                Err(err) => {
                    tracing::error!(%err, entries = batch.len(), "audit batch lost");
                    result = Err(err.to_string());
                    break;
                }
            }
        }
        batch.clear();
        for ack in acks.drain(..) {
            let _ = ack.send(result.clone());
        }
    }
}

/// What a usage counter counts.
#[derive(PartialEq, Eq, Hash)]
struct UsageKey {
    guild_id: u64,
    hour: u32,
    command: String,
    channel_id: u64,
}

/// Command usage counters, summed in process and flushed in one write.
///
/// `record` is synchronous and cheap (a short mutex, never held across an await), so the
/// hot path pays no I/O. Counts not yet flushed are lost in a crash: usage analytics trade
/// that for not writing per command.
///
/// Each flush carries an id; a flush that failed is retried as it was, with its id, before
/// anything newer, so a store that applied part of it applies that part only once
/// ([`UsageRepo::add_usage_flush`]).
pub struct UsageAggregator {
    repo: Arc<dyn UsageRepo>,
    pending: Mutex<HashMap<UsageKey, u64>>,
    /// The failed flush waiting to be retried; the lock also keeps flushes one at a time.
    unsent: tokio::sync::Mutex<Option<(u64, Vec<UsageCount>)>>,
    unsent_len: std::sync::atomic::AtomicUsize,
    next_flush: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for UsageAggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageAggregator").finish_non_exhaustive()
    }
}

impl UsageAggregator {
    pub fn new(repo: Arc<dyn UsageRepo>) -> Arc<Self> {
        // Flush ids are unique across processes: a random start per aggregator, then a count.
        let start = {
            use std::hash::{BuildHasher, Hasher};
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u64(Timestamp::now().as_millis());
            hasher.finish()
        };
        Arc::new(Self {
            repo,
            pending: Mutex::new(HashMap::new()),
            unsent: tokio::sync::Mutex::new(None),
            unsent_len: std::sync::atomic::AtomicUsize::new(0),
            next_flush: std::sync::atomic::AtomicU64::new(start),
        })
    }

    /// Counts one run of `command` in channel `channel_id` of `guild_id` at `at`.
    pub fn record(&self, guild_id: u64, command: &str, channel_id: u64, at: Timestamp) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let key = UsageKey {
            guild_id,
            hour: at.hour(),
            command: command.to_owned(),
            channel_id,
        };
        *pending.entry(key).or_default() += 1;
    }

    /// Counters waiting for the next flush (a failed flush's included).
    pub fn pending(&self) -> usize {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
            + self.unsent_len.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Writes the sums gathered so far in one call, after retrying a flush that failed
    /// before (unchanged, with its id); returns how many counters it wrote. A flush that
    /// fails is kept for the next call.
    pub async fn flush(&self) -> Result<usize, StorageError> {
        use std::sync::atomic::Ordering;
        let mut unsent = self.unsent.lock().await;
        let mut written = 0;
        if let Some((id, deltas)) = unsent.as_ref() {
            self.repo.add_usage_flush(*id, deltas).await?;
            written += deltas.len();
            *unsent = None;
            self.unsent_len.store(0, Ordering::Relaxed);
        }
        let taken =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        if taken.is_empty() {
            return Ok(written);
        }
        let mut deltas: Vec<UsageCount> = taken
            .into_iter()
            .map(|(key, count)| UsageCount {
                guild_id: key.guild_id,
                hour: key.hour,
                command: key.command,
                channel_id: key.channel_id,
                count,
            })
            .collect();
        deltas.sort();
        let id = self.next_flush.fetch_add(1, Ordering::Relaxed);
        match self.repo.add_usage_flush(id, &deltas).await {
            Ok(()) => Ok(written + deltas.len()),
            Err(err) => {
                self.unsent_len.store(deltas.len(), Ordering::Relaxed);
                *unsent = Some((id, deltas));
                Err(err)
            }
        }
    }

    /// Flushes every `every` until `shutdown` resolves, then a last time.
    pub fn spawn_flusher(
        self: &Arc<Self>,
        every: Duration,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            every_until(every, shutdown, || async {
                if let Err(err) = this.flush().await {
                    tracing::warn!(%err, "usage flush failed; counts kept for the next one");
                }
            })
            .await;
            if let Err(err) = this.flush().await {
                tracing::error!(%err, "last usage flush failed; counts lost");
            }
        })
    }
}

/// Runs [`DataRights::sweep_expired`] every `every` with the time `clock` gives, until
/// `shutdown` resolves.
pub fn spawn_sweeper(
    store: Arc<dyn DataRights>,
    every: Duration,
    clock: impl Fn() -> Timestamp + Send + 'static,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(every_until(every, shutdown, move || {
        let store = Arc::clone(&store);
        let now = clock();
        async move {
            match store.sweep_expired(now).await {
                Ok(0) => {}
                Ok(removed) => {
                    metrics::counter!(crate::metrics::EXPIRED_DELETED).increment(removed);
                    tracing::info!(removed, "retention sweep");
                }
                Err(err) => tracing::warn!(%err, "retention sweep failed"),
            }
        }
    }))
}

/// Runs `round` every `every` until `shutdown` resolves; a round that runs late delays the
/// next instead of bunching the missed ones. What the background tasks of the store share.
pub(crate) async fn every_until<F, Fut>(
    every: Duration,
    shutdown: impl Future<Output = ()>,
    mut round: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = ticks.tick() => round().await,
            () = &mut shutdown => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what it is asked to write; fails while `fail` is set.
    #[derive(Default)]
    struct Recorder {
        writes: Mutex<Vec<Vec<UsageCount>>>,
        /// The flush id of every attempt, failed ones included.
        ids: Mutex<Vec<u64>>,
        fail: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl UsageRepo for Recorder {
        async fn add_usage(&self, _: &[UsageCount]) -> Result<(), StorageError> {
            unreachable!("the aggregator writes flushes with their id")
        }

        async fn add_usage_flush(
            &self,
            id: u64,
            deltas: &[UsageCount],
        ) -> Result<(), StorageError> {
            self.ids.lock().unwrap().push(id);
            if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(StorageError::Database("down".into()));
            }
            self.writes.lock().unwrap().push(deltas.to_vec());
            Ok(())
        }

        async fn usage(&self, _: u64, _: u32, _: u32) -> Result<Vec<UsageCount>, StorageError> {
            Ok(Vec::new())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_flusher_writes_sums_per_tick_and_keeps_them_on_failure() {
        let repo = Arc::new(Recorder::default());
        let usage = UsageAggregator::new(repo.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let flusher = usage.spawn_flusher(Duration::from_secs(10), async {
            let _ = stopped.await;
        });
        let day = Timestamp::from_days(100);
        usage.record(1, "ping", 7, day);
        usage.record(1, "ping", 7, day);
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert_eq!(repo.writes.lock().unwrap().len(), 1);
        assert_eq!(repo.writes.lock().unwrap()[0][0].count, 2);

        repo.fail.store(true, std::sync::atomic::Ordering::SeqCst);
        usage.record(1, "ping", 7, day);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(usage.pending(), 1, "a failed flush keeps its counts");
        usage.record(1, "ping", 7, day);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(
            usage.pending(),
            2,
            "the failed flush stays apart from newer counts"
        );
        repo.fail.store(false, std::sync::atomic::Ordering::SeqCst);
        stop.send(()).unwrap();
        flusher.await.unwrap();
        let writes = repo.writes.lock().unwrap();
        let ids = repo.ids.lock().unwrap();
        // Attempts: the first flush; the failed one, retried as is on the next tick (failing
        // again) and at shutdown; then the newer counts under a new id.
        assert_eq!(ids.len(), 5, "{ids:?}");
        assert_eq!((ids[1], ids[2], ids[3]), (ids[1], ids[1], ids[1]));
        assert!(ids[4] != ids[1] && ids[1] != ids[0]);
        assert_eq!(writes.len(), 3, "the last flushes on shutdown");
        assert_eq!((writes[1][0].count, writes[2][0].count), (1, 1));
        assert_eq!(usage.pending(), 0);
    }
}
