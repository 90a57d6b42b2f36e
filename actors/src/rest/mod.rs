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
use tokio::sync::{mpsc, oneshot};
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
pub use transport::Transport;

/// Values of the `outcome` label of `protonn_rest_requests_total`.
pub(crate) const OUTCOME_LABELS: [&str; 7] = [
    "ok",
    "rate_limited",
    "client_error",
    "server_error",
    "transport_error",
    "held_back",
    "queue_full",
];

/// A request is tried this many times at most when Discord answers 429.
const MAX_TRIES: u32 = 3;
/// Requests waiting on a node at most; more are refused (a reply minutes late is useless,
/// and an unbounded line is how an overloaded node runs out of memory).
pub const MAX_QUEUED: usize = 10_000;
/// A lane with nothing to do ends after this long.
const LANE_IDLE: Duration = Duration::from_secs(30);

/// Why a request was not answered with success.
#[derive(Clone, Debug, thiserror::Error)]
pub enum RestError {
    #[error("Discord answered {status}")]
    Status { status: u16, body: Bytes },
    #[error("rate limited ({scope:?}) {MAX_TRIES} times")]
    RateLimited { scope: Scope },
    #[error("held back by the invalid-request guard ({0:?})")]
    HeldBack(GuardState),
    #[error("more than {MAX_QUEUED} REST requests waiting")]
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
    made: Instant,
    done: oneshot::Sender<Outcome>,
    /// For a GET: the path its identical followers wait on.
    coalesced: Option<String>,
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
    queued: AtomicUsize,
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
            }),
        }
    }

    pub fn guard(&self) -> &Arc<InvalidRequestGuard> {
        &self.inner.guard
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
        if inner.queued.fetch_add(1, Ordering::Relaxed) >= MAX_QUEUED {
            inner.queued.fetch_sub(1, Ordering::Relaxed);
            record(route, "queue_full");
            inner.finish(
                Job {
                    route,
                    made: Instant::now(),
                    request,
                    done,
                    coalesced,
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
            done,
            coalesced,
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
            self.queued.fetch_sub(1, Ordering::Relaxed);
            gauge!(REST_QUEUED).decrement(1.0);
            self.finish(job, outcome);
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

    /// Sends one request, waiting for its bucket, the global limit and retrying 429s.
    async fn attempt(&self, major: &str, job: &Job) -> Outcome {
        let (route, request) = (job.route, &job.request);
        let exempt = bucket::is_interaction(request.path());
        let mut tries = 0;
        loop {
            while let Err(reset_at) = self.buckets.take(route, major) {
                tokio::time::sleep_until(reset_at).await;
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

fn record(route: &'static str, outcome: &'static str) {
    counter!(REST_REQUESTS, "route" => route, "outcome" => outcome).increment(1);
}
