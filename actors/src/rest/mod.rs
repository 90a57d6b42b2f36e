//! Discord REST out, under Discord's limits. Requests are built by twilight-http's typed
//! builders and sent by us, so every response's `x-ratelimit-*` headers and every 429 reach
//! this limiter (twilight-http 0.18 retries a 429 at once, without end, and keeps its
//! headers to itself).
//!
//! A request, once made, waits in its lane: requests of one route and top-level resource (a
//! channel's messages, one interaction) go one at a time in the order they were made, so
//! each knows its bucket from the previous response and none is sent into an exhausted
//! bucket. In turn it waits for the bucket, for a global 429's block to end, and for a
//! permit of the node's global share (interaction routes are exempt from the last two);
//! the invalid-request guard may refuse it at any point before it is sent.

mod bucket;
mod global;
mod guard;
mod transport;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use hyper::StatusCode;
use metrics::{counter, gauge, histogram};
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::{Duration, Instant};
use twilight_http::request::{Method, Request};

use crate::metrics::{REST_PERMIT_WAIT, REST_QUEUED, REST_RATE_LIMITED, REST_REQUESTS};
use bucket::{Buckets, TooManyRequests};

pub use bucket::Scope;
pub use global::{Demand, GlobalLine};
pub use guard::{
    DISCORD_INVALID_LIMIT, GuardLimits, GuardReport, GuardState, INVALID_WINDOW,
    InvalidRequestGuard, SlidingCount,
};
pub use transport::{Transport, discord_connector};

/// Values of the `outcome` label of `protonn_rest_requests_total`.
pub(crate) const OUTCOME_LABELS: [&str; 8] = [
    "ok",
    "rate_limited",
    "client_error",
    "server_error",
    "transport_error",
    "held_back",
    "queue_full",
    "expired",
];

/// A request is tried this many times at most when Discord answers 429, or (idempotent
/// requests only) 5xx.
const MAX_TRIES: u32 = 3;
/// Requests waiting on a node at most, interaction responses aside; more are refused (a
/// reply minutes late is useless, and an unbounded line is how an overloaded node runs out
/// of memory).
pub const MAX_QUEUED: usize = 10_000;
/// Interaction responses waiting at most, counted apart from [`MAX_QUEUED`] so that a
/// backlog of messages never refuses a slash command's answer. Each interaction has its
/// own lane and is exempt from the global limit, so these only wait for their own bucket:
/// the bound guards memory, not latency.
pub const MAX_QUEUED_INTERACTIONS: usize = 1_000;
/// First pause before retrying an idempotent request Discord answered with 5xx; doubles
/// per try, and each pause is drawn from its upper half so that retries of many requests
/// do not arrive together.
const SERVER_ERROR_BACKOFF: Duration = Duration::from_millis(200);
/// A lane with nothing to do ends after this long.
const LANE_IDLE: Duration = Duration::from_secs(30);
/// Background requests waiting at most (announcements: one per guild being delivered to).
pub const MAX_QUEUED_BACKGROUND: usize = 100;
/// How often a background request waiting for the foreground to empty looks again, in case
/// a wake-up came between its look and its wait.
const BACKGROUND_RECHECK: Duration = Duration::from_millis(50);

/// Why a request was not answered with success.
#[derive(Clone, Debug, thiserror::Error)]
pub enum RestError {
    #[error("Discord answered {status}")]
    Status { status: u16, body: Bytes },
    #[error("rate limited ({scope:?}) {MAX_TRIES} times")]
    RateLimited { scope: Scope },
    #[error("held back by the invalid-request guard ({0:?})")]
    HeldBack(GuardState),
    #[error("too many REST requests waiting")]
    QueueFull,
    #[error("request timed out")]
    Timeout,
    #[error("transport: {0}")]
    Transport(String),
    #[error("response body: {0}")]
    Body(String),
}

/// A successful response.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Bytes,
}

impl Reply {
    pub fn model<T: DeserializeOwned>(&self) -> Result<T, RestError> {
        serde_json::from_slice(&self.body).map_err(|err| RestError::Body(err.to_string()))
    }
}

type Outcome = Result<Reply, RestError>;

struct Job {
    route: &'static str,
    request: Request,
    /// An interaction response: exempt from the global limit, and counted in its own queue.
    exempt: bool,
    made: Instant,
    done: oneshot::Sender<Outcome>,
    /// For a GET: the path its identical followers wait on.
    coalesced: Option<String>,
    /// A background request ([`Rest::send_background`]): it takes a global place only when
    /// nothing else waits, and gives up (unsent) at this instant.
    background: Option<Instant>,
}

/// The node's Discord REST client. Cheap to clone.
#[derive(Clone)]
pub struct Rest {
    inner: Arc<Inner>,
}

struct Inner {
    transport: Arc<Transport>,
    global: Arc<GlobalLine>,
    guard: Arc<InvalidRequestGuard>,
    buckets: Buckets,
    lanes: Mutex<HashMap<(&'static str, String), mpsc::UnboundedSender<Job>>>,
    /// GETs in flight by path, with the callers waiting on the same answer.
    gets: Mutex<HashMap<String, Vec<oneshot::Sender<Outcome>>>>,
    /// Until when a global 429 stops everything but interaction routes.
    global_block: Mutex<Option<Instant>>,
    /// Requests waiting, interaction responses aside (at most [`MAX_QUEUED`]).
    queued: AtomicUsize,
    /// Interaction responses waiting (at most [`MAX_QUEUED_INTERACTIONS`]).
    queued_interactions: AtomicUsize,
    /// Woken when the last waiting request is done, for [`Rest::flush`] and the
    /// background lane.
    idle: Notify,
    /// The background lane, started on its first request.
    background: Mutex<Option<mpsc::Sender<Job>>>,
}

impl Rest {
    /// Clients may share a transport (its connections) and a guard (the count is the bot's).
    pub fn new(
        transport: Arc<Transport>,
        global: Arc<GlobalLine>,
        guard: Arc<InvalidRequestGuard>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                transport,
                global,
                guard,
                buckets: Buckets::default(),
                lanes: Mutex::default(),
                gets: Mutex::default(),
                global_block: Mutex::default(),
                queued: AtomicUsize::new(0),
                queued_interactions: AtomicUsize::new(0),
                idle: Notify::new(),
                background: Mutex::default(),
            }),
        }
    }

    pub fn guard(&self) -> &Arc<InvalidRequestGuard> {
        &self.inner.guard
    }

    /// Requests waiting now: (messages and other routes, interaction responses).
    pub fn queued(&self) -> (usize, usize) {
        let inner = &self.inner;
        (
            inner.queued.load(Ordering::Acquire),
            inner.queued_interactions.load(Ordering::Acquire),
        )
    }

    /// Waits until every request made so far is answered, or `within` has passed; whether
    /// the queue emptied. A stopping node calls it after its guild actors have drained, so
    /// the replies they made leave before the process does.
    pub async fn flush(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            // Registered before looking, so a wake-up between the two is not missed.
            let idle = self.inner.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.queued() == (0, 0) {
                return true;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return self.queued() == (0, 0);
            }
        }
    }

    /// Queues `request` now (requests of one lane leave in the order they were made) and
    /// resolves with its answer. `route` names it in metrics; it must be one of a fixed set.
    /// Identical GETs made while one is in flight share its answer.
    pub fn send(
        &self,
        route: &'static str,
        request: Request,
    ) -> impl Future<Output = Outcome> + Send + 'static {
        let (done, answer) = oneshot::channel();
        self.enqueue(route, request, done);
        async move {
            answer
                .await
                .unwrap_or_else(|_| Err(RestError::Transport("REST client stopped".into())))
        }
    }

    /// Queues `request` in the background lane, below everything [`send`](Self::send) queues:
    /// one background request at a time, in order, each taking a place in the node's global
    /// line (its REST share) only while no other request waits for one, so a reply or an
    /// interaction response has at most one background request ahead of it. A request not
    /// sent by `give_up_at` is answered [`RestError::Timeout`] and was never sent. At most
    /// [`MAX_QUEUED_BACKGROUND`] wait; more are refused (`queue_full`).
    pub fn send_background(
        &self,
        route: &'static str,
        request: Request,
        give_up_at: Instant,
    ) -> impl Future<Output = Outcome> + Send + 'static {
        let (done, answer) = oneshot::channel();
        let job = Job {
            route,
            made: Instant::now(),
            request,
            exempt: false,
            done,
            coalesced: None,
            background: Some(give_up_at),
        };
        let mut lane = self
            .inner
            .background
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let sender = lane.get_or_insert_with(|| {
            let (sender, jobs) = mpsc::channel(MAX_QUEUED_BACKGROUND);
            tokio::spawn(Arc::clone(&self.inner).run_background(jobs));
            sender
        });
        if let Err(err) = sender.try_send(job) {
            let job = match err {
                mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job) => {
                    job
                }
            };
            record(route, "queue_full");
            let _ = job.done.send(Err(RestError::QueueFull));
        }
        async move {
            answer
                .await
                .unwrap_or_else(|_| Err(RestError::Transport("REST client stopped".into())))
        }
    }

    fn enqueue(&self, route: &'static str, request: Request, done: oneshot::Sender<Outcome>) {
        let inner = &self.inner;
        let exempt = bucket::is_interaction(request.path());
        if !inner.guard.admits(exempt) {
            record(route, "held_back");
            let _ = done.send(Err(RestError::HeldBack(inner.guard.state())));
            return;
        }
        let coalesced = (request.method() == Method::Get).then(|| request.path().to_owned());
        if let Some(path) = &coalesced {
            let mut gets = inner.gets.lock().unwrap_or_else(PoisonError::into_inner);
            match gets.get_mut(path) {
                Some(waiting) => return waiting.push(done),
                None => {
                    gets.insert(path.clone(), Vec::new());
                }
            }
        }
        let (queued, bound) = inner.line(exempt);
        if queued.fetch_add(1, Ordering::AcqRel) >= bound {
            inner.done_waiting(exempt);
            record(route, "queue_full");
            inner.finish(
                Job {
                    route,
                    made: Instant::now(),
                    request,
                    exempt,
                    done,
                    coalesced,
                    background: None,
                },
                Err(RestError::QueueFull),
            );
            return;
        }
        gauge!(REST_QUEUED).increment(1.0);
        if !exempt {
            inner.global.arrive();
        }
        let key = (route, bucket::major(request.path()).to_owned());
        let mut job = Job {
            route,
            made: Instant::now(),
            request,
            exempt,
            done,
            coalesced,
            background: None,
        };
        let mut lanes = inner.lanes.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(lane) = lanes.get(&key) {
            match lane.send(job) {
                Ok(()) => return,
                // The lane ended while idle: start a new one.
                Err(mpsc::error::SendError(returned)) => job = returned,
            }
        }
        let (lane, jobs) = mpsc::unbounded_channel();
        let _ = lane.send(job);
        lanes.insert(key.clone(), lane);
        tokio::spawn(Arc::clone(inner).run_lane(key, jobs));
    }
}

impl Inner {
    /// The count and bound of the queue a request waits in.
    fn line(&self, exempt: bool) -> (&AtomicUsize, usize) {
        if exempt {
            (&self.queued_interactions, MAX_QUEUED_INTERACTIONS)
        } else {
            (&self.queued, MAX_QUEUED)
        }
    }

    /// A request left its queue; the last one out wakes [`Rest::flush`].
    fn done_waiting(&self, exempt: bool) {
        let (queued, _) = self.line(exempt);
        if queued.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// The background lane: its requests one at a time, each sent only when its turn comes
    /// before its deadline.
    async fn run_background(self: Arc<Self>, mut jobs: mpsc::Receiver<Job>) {
        while let Some(job) = jobs.recv().await {
            let major = bucket::major(job.request.path()).to_owned();
            let outcome = self.attempt(&major, &job).await;
            let _ = job.done.send(outcome);
        }
    }

    /// Waits until no request other than background ones waits on this node, or until
    /// `give_up_at`; whether the foreground emptied in time.
    async fn foreground_idle(&self, give_up_at: Instant) -> bool {
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.queued.load(Ordering::Acquire) == 0 && self.global.waiting() == 0 {
                return true;
            }
            let until = give_up_at.min(Instant::now() + BACKGROUND_RECHECK);
            let _ = tokio::time::timeout_at(until, idle).await;
            if Instant::now() >= give_up_at {
                return false;
            }
        }
    }

    async fn run_lane(
        self: Arc<Self>,
        key: (&'static str, String),
        mut jobs: mpsc::UnboundedReceiver<Job>,
    ) {
        loop {
            let job = match tokio::time::timeout(LANE_IDLE, jobs.recv()).await {
                Ok(Some(job)) => job,
                Ok(None) => return,
                Err(_) => {
                    let mut lanes = self.lanes.lock().unwrap_or_else(PoisonError::into_inner);
                    // Under the lock nobody can be sending to this lane: if it is still
                    // empty it may go.
                    if jobs.is_empty() {
                        lanes.remove(&key);
                        return;
                    }
                    continue;
                }
            };
            let outcome = self.attempt(&key.1, &job).await;
            gauge!(REST_QUEUED).decrement(1.0);
            // Answered before it stops counting, so a flush that sees zero saw it done.
            let exempt = job.exempt;
            self.finish(job, outcome);
            self.done_waiting(exempt);
        }
    }

    fn finish(&self, job: Job, outcome: Outcome) {
        if let Some(path) = &job.coalesced {
            let waiting = self
                .gets
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(path)
                .unwrap_or_default();
            for follower in waiting {
                let _ = follower.send(outcome.clone());
            }
        }
        let _ = job.done.send(outcome);
    }

    /// Sends one request, waiting for its bucket, the global limit and retrying 429s (and
    /// 5xx of idempotent requests).
    async fn attempt(&self, major: &str, job: &Job) -> Outcome {
        let (route, request, exempt) = (job.route, &job.request, job.exempt);
        let mut tries = 0;
        loop {
            while let Err(reset_at) = self.buckets.take(route, major) {
                tokio::time::sleep_until(reset_at).await;
            }
            if let Some(give_up_at) = job.background
                && (Instant::now() >= give_up_at || !self.foreground_idle(give_up_at).await)
            {
                record(route, "expired");
                return Err(RestError::Timeout);
            }
            if !exempt {
                self.wait_global_block().await;
                self.global.acquire().await;
                histogram!(REST_PERMIT_WAIT).record(job.made.elapsed().as_secs_f64());
            }
            // The guard may have closed while this request waited.
            if !self.guard.admits(exempt) {
                record(route, "held_back");
                return Err(RestError::HeldBack(self.guard.state()));
            }
            let response = match self.transport.send(request).await {
                Ok(response) => response,
                Err(err) => {
                    record(route, "transport_error");
                    tracing::warn!(route, error = %err, "discord request failed");
                    return Err(err);
                }
            };
            self.buckets.learn(route, major, &response.headers);
            let status = response.status;
            if status.is_success() {
                record(route, "ok");
                return Ok(Reply {
                    status: status.as_u16(),
                    body: response.body,
                });
            }
            if status == StatusCode::TOO_MANY_REQUESTS {
                record(route, "rate_limited");
                let limited = TooManyRequests::parse(&response.headers, &response.body);
                counter!(REST_RATE_LIMITED, "scope" => limited.scope.label()).increment(1);
                if limited.scope != Scope::Shared {
                    self.guard.record_invalid(false);
                }
                tracing::warn!(
                    route,
                    scope = limited.scope.label(),
                    retry_after_ms = limited.retry_after.as_millis() as u64,
                    "discord rate limited a request"
                );
                match limited.scope {
                    Scope::Global => self.block_global(limited.retry_after),
                    Scope::User | Scope::Shared => {
                        self.buckets.exhaust(route, major, limited.retry_after)
                    }
                }
                tries += 1;
                if tries == MAX_TRIES {
                    return Err(RestError::RateLimited {
                        scope: limited.scope,
                    });
                }
                continue;
            }
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                self.guard
                    .record_invalid(status == StatusCode::UNAUTHORIZED);
            }
            let outcome = if status.is_server_error() {
                "server_error"
            } else {
                "client_error"
            };
            record(route, outcome);
            // Discord's 5xx often pass within a second; repeating a request is safe only if
            // it means the same the second time (a repeated POST could post twice).
            if status.is_server_error() && idempotent(request.method()) && tries + 1 < MAX_TRIES {
                tries += 1;
                let pause = server_error_pause(tries);
                tracing::debug!(
                    route,
                    status = status.as_u16(),
                    ?pause,
                    "retrying after a server error"
                );
                tokio::time::sleep(pause).await;
                continue;
            }
            tracing::warn!(route, status = status.as_u16(), "discord refused a request");
            return Err(RestError::Status {
                status: status.as_u16(),
                body: response.body,
            });
        }
    }

    fn block_global(&self, retry_after: Duration) {
        let until = Instant::now() + retry_after;
        let mut block = self
            .global_block
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *block = Some(block.map_or(until, |known| known.max(until)));
    }

    async fn wait_global_block(&self) {
        loop {
            let until = *self
                .global_block
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match until {
                Some(until) if until > Instant::now() => tokio::time::sleep_until(until).await,
                _ => return,
            }
        }
    }
}

/// Whether sending `method` twice means the same as sending it once.
fn idempotent(method: Method) -> bool {
    matches!(method, Method::Get | Method::Put | Method::Delete)
}

/// The pause before the `retry`-th retry after a 5xx: in the upper half of a doubling step.
fn server_error_pause(retry: u32) -> Duration {
    let step = SERVER_ERROR_BACKOFF.saturating_mul(1 << (retry - 1).min(8));
    step.mul_f64(rand::random_range(0.5..=1.0))
}

fn record(route: &'static str, outcome: &'static str) {
    counter!(REST_REQUESTS, "route" => route, "outcome" => outcome).increment(1);
}
