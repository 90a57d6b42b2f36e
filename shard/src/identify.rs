//! The identify scheduler: the one owner of IDENTIFY, Discord's scarcest resource.
//!
//! Discord allows one IDENTIFY per bucket (`shard_id % max_concurrency`) per 5 s, and a
//! daily budget of session starts. [`LocalScheduler`] enforces both for one process; the
//! coordinator serves the same trait to a whole cluster.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::metrics::{IDENTIFIES, IDENTIFY_BLOCKED, IDENTIFY_BUDGET_REMAINING, IDENTIFY_WAIT};

/// Why a shard identifies. Startups may not touch the budget kept in reserve; recoveries
/// (a session Discord invalidated) may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IdentifyReason {
    /// The first session of a shard on this node.
    Startup,
    /// Discord invalidated the session (op 9 `false`), or it could not be resumed.
    InvalidSession,
}

impl IdentifyReason {
    pub const LABELS: [&'static str; 2] = ["startup", "invalid_session"];

    pub fn label(self) -> &'static str {
        match self {
            Self::Startup => "startup",
            Self::InvalidSession => "invalid_session",
        }
    }
}

/// Grants IDENTIFY permits.
pub trait IdentifyScheduler: Send + Sync + 'static {
    /// Resolves when `shard_id` may send one IDENTIFY. Dropping the future withdraws the
    /// request; a request is never refused, only delayed (a shard waits rather than spends
    /// budget it must not).
    fn acquire(
        &self,
        shard_id: u32,
        reason: IdentifyReason,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
}

/// Settings of the in-process scheduler, from `GET /gateway/bot`.
#[derive(Clone, Debug)]
pub struct IdentifyConfig {
    /// Buckets: shards `b, b + max_concurrency, …` share bucket `b`.
    pub max_concurrency: u16,
    /// One IDENTIFY per bucket per window: 5 s at Discord (tests scale it down).
    pub window: Duration,
    /// Session starts left in the current daily period.
    pub remaining: u32,
    /// Session starts per daily period.
    pub total: u32,
    /// Time until the current daily period ends.
    pub reset_after: Duration,
    /// Length of a daily period: 24 h at Discord.
    pub period: Duration,
    /// Session starts kept for recoveries: startups wait once only this many are left.
    pub reserve: u32,
}

impl IdentifyConfig {
    /// Discord's rules for a bot with these limits, keeping 5 % of the daily budget (at least
    /// one per bucket) for recoveries.
    pub fn discord(
        max_concurrency: u16,
        remaining: u32,
        total: u32,
        reset_after: Duration,
    ) -> Self {
        Self {
            max_concurrency: max_concurrency.max(1),
            window: Duration::from_secs(5),
            remaining: remaining.min(total),
            total,
            reset_after,
            period: Duration::from_secs(24 * 60 * 60),
            reserve: (total / 20).max(u32::from(max_concurrency)).min(total),
        }
    }

    /// Gap between two permits of one bucket. The 1 % margin absorbs jitter between the
    /// permit and the IDENTIFY reaching Discord, which counts arrivals.
    fn spacing(&self) -> Duration {
        self.window + self.window / 100
    }
}

/// The in-process scheduler: one task owns the buckets and the budget.
#[derive(Clone)]
pub struct LocalScheduler {
    requests: mpsc::UnboundedSender<Request>,
    /// The schedule's session starts left, as of its last grant or daily reset.
    remaining: Arc<AtomicU32>,
    config: IdentifyConfig,
}

struct Request {
    shard_id: u32,
    reason: IdentifyReason,
    grant: oneshot::Sender<()>,
}

impl LocalScheduler {
    /// Starts the scheduler task; it ends when the last handle is dropped.
    pub fn start(config: IdentifyConfig) -> Self {
        let (requests, inbox) = mpsc::unbounded_channel();
        let schedule = Schedule::new(config.clone());
        let remaining = Arc::clone(&schedule.shared_remaining);
        tokio::spawn(schedule.run(inbox));
        Self {
            requests,
            remaining,
            config,
        }
    }

    /// Session starts that startups may still spend today: the budget left above the
    /// reserve. What a plan that starts many shards at once (a resharding) checks first.
    pub fn startups_left(&self) -> u32 {
        self.remaining
            .load(Ordering::Relaxed)
            .saturating_sub(self.config.reserve)
    }

    /// The least time `shards` IDENTIFYs take: one per bucket per window, so
    /// ceil(shards / max_concurrency) windows (the physical floor of a cold start).
    pub fn floor(&self, shards: u32) -> Duration {
        self.config.window * shards.div_ceil(u32::from(self.config.max_concurrency.max(1)))
    }
}

impl IdentifyScheduler for LocalScheduler {
    fn acquire(
        &self,
        shard_id: u32,
        reason: IdentifyReason,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        let (grant, granted) = oneshot::channel();
        let request = Request {
            shard_id,
            reason,
            grant,
        };
        let sent = self.requests.send(request).is_ok();
        Box::pin(async move {
            // The schedule task only ends with the process; never grant without it.
            if !sent || granted.await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

/// The scheduler's state, owned by its task.
struct Schedule {
    config: IdentifyConfig,
    buckets: Vec<VecDeque<Request>>,
    /// When each bucket may next grant.
    next_free: Vec<Instant>,
    remaining: u32,
    /// `remaining`, for [`LocalScheduler::startups_left`].
    shared_remaining: Arc<AtomicU32>,
    reset_at: Instant,
    /// Requests held back by the budget at the last pass (to alert once, not per pass).
    blocked: usize,
}

impl Schedule {
    fn new(config: IdentifyConfig) -> Self {
        let now = Instant::now();
        let buckets = usize::from(config.max_concurrency.max(1));
        gauge!(IDENTIFY_BUDGET_REMAINING).set(f64::from(config.remaining));
        gauge!(IDENTIFY_BLOCKED).set(0.0);
        Self {
            buckets: (0..buckets).map(|_| VecDeque::new()).collect(),
            next_free: vec![now; buckets],
            remaining: config.remaining,
            shared_remaining: Arc::new(AtomicU32::new(config.remaining)),
            reset_at: now + config.reset_after,
            blocked: 0,
            config,
        }
    }

    async fn run(mut self, mut inbox: mpsc::UnboundedReceiver<Request>) {
        loop {
            let wake = self.next_wake();
            tokio::select! {
                biased;
                request = inbox.recv() => match request {
                    Some(request) => {
                        let bucket = request.shard_id as usize % self.buckets.len();
                        self.buckets[bucket].push_back(request);
                    }
                    None => return,
                },
                () = sleep_until(wake) => {}
            }
            self.grant_due(Instant::now());
        }
    }

    /// Whether the budget lets this request identify now.
    fn affordable(&self, reason: IdentifyReason) -> bool {
        match reason {
            IdentifyReason::InvalidSession => self.remaining > 0,
            IdentifyReason::Startup => self.remaining > self.config.reserve,
        }
    }

    /// Grants every bucket whose window has passed its first affordable request.
    fn grant_due(&mut self, now: Instant) {
        if now >= self.reset_at {
            self.remaining = self.config.total;
            self.reset_at = now + self.config.period;
        }
        let mut blocked = 0;
        for bucket in 0..self.buckets.len() {
            self.buckets[bucket].retain(|request| !request.grant.is_closed());
            if now < self.next_free[bucket] {
                continue;
            }
            let queue = &self.buckets[bucket];
            let Some(position) = queue.iter().position(|r| self.affordable(r.reason)) else {
                blocked += queue.len();
                continue;
            };
            let request = self.buckets[bucket]
                .remove(position)
                .expect("position is in range");
            if request.grant.send(()).is_ok() {
                self.remaining -= 1;
                self.next_free[bucket] = now + self.config.spacing();
            }
        }
        gauge!(IDENTIFY_BUDGET_REMAINING).set(f64::from(self.remaining));
        self.shared_remaining
            .store(self.remaining, Ordering::Relaxed);
        gauge!(IDENTIFY_BLOCKED).set(blocked as f64);
        if blocked > 0 && self.blocked == 0 {
            tracing::error!(
                blocked,
                remaining = self.remaining,
                reserve = self.config.reserve,
                "identify budget held in reserve: shards wait for the daily reset"
            );
        }
        self.blocked = blocked;
    }

    /// The next moment a grant may become possible: a bucket's window passing, or the
    /// daily reset for a bucket whose requests the budget holds back.
    fn next_wake(&self) -> Option<Instant> {
        self.buckets
            .iter()
            .zip(&self.next_free)
            .filter(|(queue, _)| !queue.is_empty())
            .map(|(queue, &free)| {
                if queue.iter().any(|r| self.affordable(r.reason)) {
                    free
                } else {
                    free.max(self.reset_at)
                }
            })
            .min()
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// One shard's view of the scheduler, in the shape twilight asks for.
///
/// twilight calls `enqueue` inside `poll_next`, so it must not block; and a dropped sender
/// makes it ask again at once, so the sender lives until the permit is sent or the shard
/// stops waiting.
#[derive(Clone)]
pub(crate) struct ShardQueue {
    scheduler: Arc<dyn IdentifyScheduler>,
    /// Identify window, for the pause Discord asks for after an invalid session.
    window: Duration,
    /// Whether this runner already had a session: then an IDENTIFY means it lost it.
    had_session: Arc<AtomicBool>,
}

impl ShardQueue {
    pub(crate) fn new(
        scheduler: Arc<dyn IdentifyScheduler>,
        window: Duration,
        had_session: bool,
    ) -> Self {
        Self {
            scheduler,
            window,
            had_session: Arc::new(had_session.into()),
        }
    }
}

impl twilight_gateway::queue::Queue for ShardQueue {
    fn enqueue(&self, shard_id: u32) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let reason = if self.had_session.swap(true, Ordering::Relaxed) {
            IdentifyReason::InvalidSession
        } else {
            IdentifyReason::Startup
        };
        // Discord asks for a random 1–5 s pause before identifying again after op 9 false
        // (a fifth to all of the identify window).
        let pause = match reason {
            IdentifyReason::Startup => Duration::ZERO,
            IdentifyReason::InvalidSession => self.window.mul_f64(rand::random_range(0.2..=1.0)),
        };
        let scheduler = Arc::clone(&self.scheduler);
        let asked_at = Instant::now();
        tokio::spawn(async move {
            let mut tx = tx;
            let permit = async {
                tokio::time::sleep(pause).await;
                scheduler.acquire(shard_id, reason).await;
            };
            tokio::select! {
                () = permit => {
                    let shard = shard_id.to_string();
                    histogram!(IDENTIFY_WAIT).record(asked_at.elapsed().as_secs_f64());
                    counter!(IDENTIFIES, "shard" => shard, "reason" => reason.label()).increment(1);
                    let _ = tx.send(());
                }
                // The shard dropped its receiver (it stopped): withdraw the request.
                () = tx.closed() => {}
            }
        });
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max_concurrency: u16, remaining: u32, reserve: u32) -> IdentifyConfig {
        IdentifyConfig {
            max_concurrency,
            window: Duration::from_secs(5),
            remaining,
            total: 1_000,
            reset_after: Duration::from_secs(3_600),
            period: Duration::from_secs(86_400),
            reserve,
        }
    }

    /// Asks for a permit for each shard at once; returns when each was granted, from start.
    async fn cold_start(scheduler: &LocalScheduler, shards: u32) -> Vec<Duration> {
        let start = Instant::now();
        let grants = (0..shards).map(|shard| {
            let permit = scheduler.acquire(shard, IdentifyReason::Startup);
            tokio::spawn(async move {
                permit.await;
                start.elapsed()
            })
        });
        let mut times = Vec::new();
        for grant in grants.collect::<Vec<_>>() {
            times.push(grant.await.unwrap());
        }
        times
    }

    #[tokio::test(start_paused = true)]
    async fn a_cold_start_takes_one_window_per_round_of_buckets() {
        for (shards, max_concurrency) in [(64u32, 16u16), (64, 1), (10, 4)] {
            let cfg = config(max_concurrency, 1_000, 0);
            let spacing = cfg.spacing();
            let scheduler = LocalScheduler::start(cfg);
            let times = cold_start(&scheduler, shards).await;
            for (shard, granted) in times.iter().enumerate() {
                // Shard s is the (s / mc)-th of its bucket: it waits that many windows.
                let round = shard as u32 / u32::from(max_concurrency);
                assert_eq!(
                    *granted,
                    spacing * round,
                    "shard {shard} of {shards}/{max_concurrency}"
                );
            }
            // The last IDENTIFY leaves before ceil(N / mc) windows, within 2 %.
            let rounds = shards.div_ceil(u32::from(max_concurrency));
            let floor = Duration::from_secs(5) * rounds;
            assert_eq!(scheduler.floor(shards), floor);
            assert!(*times.iter().max().unwrap() <= floor.mul_f64(1.02));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_reserve_is_kept_for_recoveries_until_the_daily_reset() {
        let scheduler = LocalScheduler::start(config(1, 2, 1));
        assert_eq!(
            scheduler.startups_left(),
            1,
            "two left, one of them the reserve"
        );
        let start = Instant::now();
        scheduler.acquire(0, IdentifyReason::Startup).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(scheduler.startups_left(), 0);

        // One left, and it is the reserve: a startup waits for the reset (an hour away)…
        let startup = tokio::spawn(scheduler.acquire(1, IdentifyReason::Startup));
        // …while a recovery still gets it, one window later.
        scheduler.acquire(2, IdentifyReason::InvalidSession).await;
        assert_eq!(start.elapsed(), config(1, 0, 0).spacing());
        assert!(!startup.is_finished());

        startup.await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(3_600));
    }

    #[tokio::test(start_paused = true)]
    async fn a_withdrawn_request_does_not_use_a_window() {
        let scheduler = LocalScheduler::start(config(1, 1_000, 0));
        scheduler.acquire(0, IdentifyReason::Startup).await;
        let start = Instant::now();
        drop(scheduler.acquire(1, IdentifyReason::Startup));
        scheduler.acquire(2, IdentifyReason::Startup).await;
        // Shard 2 takes the second window, not a third.
        assert_eq!(start.elapsed(), config(1, 0, 0).spacing());
    }

    #[tokio::test(start_paused = true)]
    async fn after_an_invalid_session_a_shard_pauses_one_to_five_seconds() {
        use twilight_gateway::queue::Queue;

        let scheduler = Arc::new(LocalScheduler::start(config(1, 1_000, 0)));
        let queue = ShardQueue::new(scheduler, Duration::from_secs(5), false);
        let start = Instant::now();
        queue.enqueue(0).await.unwrap();
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "the first identify is a startup"
        );

        let start = Instant::now();
        queue.enqueue(0).await.unwrap();
        let waited = start.elapsed();
        assert!(waited >= Duration::from_secs(1), "{waited:?}");
        assert!(waited <= config(1, 0, 0).spacing(), "{waited:?}");
    }
}
