//! REST rate limits as Discord applies them: a bucket per route and major
//! parameter (`x-ratelimit-*` headers on every response), the global limit
//! per bot token, Discord's 429 (body and headers), and scripted REST faults
//! ([`RestFault`]).
//!
//! Windows are fixed: a bucket's window starts with its first request and
//! holds `limit` requests until it resets, which is what Discord's
//! `x-ratelimit-reset-after` describes and what twilight-http's limiter
//! waits for.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::time::Instant;

use crate::clock::Clock;

/// `limit` requests per `per_ms` milliseconds (Discord time: scaled by
/// `time_scale`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub limit: u32,
    pub per_ms: u64,
}

/// The REST limits; the defaults are Discord's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RestLimits {
    /// Per bot token across all routes but the interaction ones: 50/s.
    pub global: RateLimit,
    /// `POST /channels/{channel_id}/messages`, per channel: 5 per 5 s.
    pub channel_messages: RateLimit,
    /// Interaction callbacks (per interaction) and the interaction webhook
    /// routes (per token); exempt from the global limit.
    pub interactions: RateLimit,
    /// Every other route, per route. Discord does not document these; the
    /// default equals the global limit so it never binds first.
    pub other_routes: RateLimit,
    /// Discord's invalid-request limit: this many 401, 403 and 429
    /// responses (429s of scope `shared` excepted) within `per_ms` ban the
    /// client from REST; 10,000 per 10 min.
    pub invalid_requests: RateLimit,
    /// How long such a ban lasts (scaled). Discord does not say; an hour is
    /// what bot authors report.
    pub ban_ms: u64,
}

impl Default for RestLimits {
    fn default() -> Self {
        Self {
            global: RateLimit {
                limit: 50,
                per_ms: 1000,
            },
            channel_messages: RateLimit {
                limit: 5,
                per_ms: 5000,
            },
            interactions: RateLimit {
                limit: 5,
                per_ms: 5000,
            },
            other_routes: RateLimit {
                limit: 50,
                per_ms: 1000,
            },
            invalid_requests: RateLimit {
                limit: 10_000,
                per_ms: 600_000,
            },
            ban_ms: 3_600_000,
        }
    }
}

impl RestLimits {
    /// The first invalid field and why: twilight reads limits as `u16`, and
    /// a zero limit or window would refuse everything.
    pub(crate) fn invalid(&self) -> Option<(&'static str, &'static str)> {
        let limit = [
            ("rest_limits.global", self.global),
            ("rest_limits.channel_messages", self.channel_messages),
            ("rest_limits.interactions", self.interactions),
            ("rest_limits.other_routes", self.other_routes),
            ("rest_limits.invalid_requests", self.invalid_requests),
        ]
        .into_iter()
        .find(|(_, l)| l.limit == 0 || l.limit > u32::from(u16::MAX) || l.per_ms == 0)
        .map(|(name, _)| (name, "limit must be in 1..=65535 and per_ms at least 1"));
        limit.or_else(|| (self.ban_ms == 0).then_some(("rest_limits.ban_ms", "must be at least 1")))
    }
}

/// `x-ratelimit-scope` of a 429.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitScope {
    /// The route bucket of this bot (per-route limit).
    User,
    /// The bot's global limit.
    Global,
    /// A resource shared with others (e.g. a busy channel); does not count
    /// as an invalid request on Discord.
    Shared,
}

impl RateLimitScope {
    fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Global => "global",
            Self::Shared => "shared",
        }
    }
}

/// Which configured limit a route falls under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LimitClass {
    ChannelMessages,
    Interactions,
    Other,
}

/// A request's bucket: route template and major parameter.
#[derive(Clone, Debug)]
pub(crate) struct RouteKey {
    pub(crate) route: &'static str,
    pub(crate) class: LimitClass,
    /// Channel id, interaction id or webhook token; empty for routes
    /// without one.
    pub(crate) major: String,
}

/// What the `x-ratelimit-*` headers of one response say.
#[derive(Clone, Debug)]
pub(crate) struct BucketState {
    pub(crate) bucket: String,
    pub(crate) limit: u32,
    pub(crate) remaining: u32,
    pub(crate) reset_after: Duration,
}

/// A request over a limit.
#[derive(Clone, Debug)]
pub(crate) struct Limited {
    pub(crate) scope: RateLimitScope,
    pub(crate) retry_after: Duration,
    /// The route bucket's state (absent for a global limit).
    pub(crate) bucket: Option<BucketState>,
}

#[derive(Debug)]
struct Window {
    reset_at: Instant,
    remaining: u32,
}

impl Window {
    fn roll(&mut self, now: Instant, limit: u32, period: Duration) {
        if now >= self.reset_at {
            self.reset_at = now + period;
            self.remaining = limit;
        }
    }
}

/// Whose global limit a request spends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Caller {
    /// The bot token's.
    Bot,
    /// A request without the bot token: its IP's.
    Ip(IpAddr),
}

#[derive(Debug)]
struct State {
    /// The bot token's global limit.
    global: Window,
    /// Requests without a bot token, limited per IP as Discord does.
    unauthenticated: HashMap<IpAddr, Window>,
    buckets: HashMap<(&'static str, String), Window>,
}

/// Windows are dropped once this many exist and they have reset, so a long
/// run over many channels stays bounded.
const PRUNE_AT: usize = 10_000;

#[derive(Debug)]
pub(crate) struct RateLimiter {
    clock: Clock,
    limits: RestLimits,
    state: Mutex<State>,
}

impl RateLimiter {
    pub(crate) fn new(clock: Clock, limits: RestLimits) -> Self {
        Self {
            clock,
            limits,
            state: Mutex::new(State {
                global: Window {
                    reset_at: clock.now(),
                    remaining: 0,
                },
                unauthenticated: HashMap::new(),
                buckets: HashMap::new(),
            }),
        }
    }

    fn limit_of(&self, class: LimitClass) -> (u32, Duration) {
        let limit = match class {
            LimitClass::ChannelMessages => self.limits.channel_messages,
            LimitClass::Interactions => self.limits.interactions,
            LimitClass::Other => self.limits.other_routes,
        };
        (
            limit.limit,
            self.clock.scaled(Duration::from_millis(limit.per_ms)),
        )
    }

    /// Spends one request of the route's bucket and (unless the route is an
    /// interaction route) of the global limit, or says which limit refused
    /// it; a refused request spends nothing. The global limit is the bot
    /// token's, or the caller's IP's (same size) for a request without it.
    pub(crate) fn check(
        &self,
        key: &RouteKey,
        now: Instant,
        caller: Caller,
    ) -> Result<BucketState, Limited> {
        let (limit, period) = self.limit_of(key.class);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.buckets.len() >= PRUNE_AT {
            state.buckets.retain(|_, w| w.reset_at > now);
        }
        if state.unauthenticated.len() >= PRUNE_AT {
            state.unauthenticated.retain(|_, w| w.reset_at > now);
        }
        let state = &mut *state;
        let window = state
            .buckets
            .entry((key.route, key.major.clone()))
            .or_insert(Window {
                reset_at: now,
                remaining: 0,
            });
        window.roll(now, limit, period);
        let bucket_state = |remaining: u32, reset_at: Instant| BucketState {
            bucket: bucket_hash(key.route),
            limit,
            remaining,
            reset_after: reset_at.saturating_duration_since(now),
        };
        if window.remaining == 0 {
            return Err(Limited {
                scope: RateLimitScope::User,
                retry_after: window.reset_at.saturating_duration_since(now),
                bucket: Some(bucket_state(0, window.reset_at)),
            });
        }
        if key.class != LimitClass::Interactions {
            let global_period = self
                .clock
                .scaled(Duration::from_millis(self.limits.global.per_ms));
            let global = match caller {
                Caller::Bot => &mut state.global,
                Caller::Ip(ip) => state.unauthenticated.entry(ip).or_insert(Window {
                    reset_at: now,
                    remaining: 0,
                }),
            };
            global.roll(now, self.limits.global.limit, global_period);
            if global.remaining == 0 {
                return Err(Limited {
                    scope: RateLimitScope::Global,
                    retry_after: global.reset_at.saturating_duration_since(now),
                    bucket: None,
                });
            }
            global.remaining -= 1;
        }
        window.remaining -= 1;
        Ok(bucket_state(window.remaining, window.reset_at))
    }

    /// The headers a scripted 429 of `scope` carries for this route.
    pub(crate) fn scripted(
        &self,
        key: &RouteKey,
        scope: RateLimitScope,
        retry_after: Duration,
    ) -> Limited {
        let (limit, _) = self.limit_of(key.class);
        Limited {
            scope,
            retry_after,
            bucket: (scope != RateLimitScope::Global).then(|| BucketState {
                bucket: bucket_hash(key.route),
                limit,
                remaining: 0,
                reset_after: retry_after,
            }),
        }
    }
}

/// An opaque bucket id per route template, 32 hex chars like Discord's;
/// stable across runs (FNV-1a, two seeds).
pub(crate) fn bucket_hash(route: &str) -> String {
    let fnv = |seed: u64| {
        route.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    };
    format!(
        "{:016x}{:016x}",
        fnv(0xcbf2_9ce4_8422_2325),
        fnv(0x84_2225_cbf2_9ce4)
    )
}

/// Seconds with millisecond precision, rounded up so a client that waits
/// this long never arrives early.
fn seconds(d: Duration) -> f64 {
    d.as_micros().div_ceil(1000) as f64 / 1000.0
}

fn insert(headers: &mut HeaderMap, name: &'static str, value: String) {
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(HeaderName::from_static(name), value);
    }
}

/// `x-ratelimit-limit`, `-remaining`, `-reset` (epoch seconds), `-reset-after`
/// and `-bucket`; `x-ratelimit-scope` only on a 429, as Discord documents
/// (so twilight-http, which learns a bucket only from a response naming
/// its scope, learns it from the 429).
pub(crate) fn apply_headers(
    headers: &mut HeaderMap,
    state: &BucketState,
    scope: Option<RateLimitScope>,
) {
    let reset = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        + state.reset_after;
    insert(headers, "x-ratelimit-bucket", state.bucket.clone());
    insert(headers, "x-ratelimit-limit", state.limit.to_string());
    insert(
        headers,
        "x-ratelimit-remaining",
        state.remaining.to_string(),
    );
    insert(
        headers,
        "x-ratelimit-reset",
        format!("{:.3}", seconds(reset)),
    );
    insert(
        headers,
        "x-ratelimit-reset-after",
        format!("{:.3}", seconds(state.reset_after)),
    );
    if let Some(scope) = scope {
        insert(headers, "x-ratelimit-scope", scope.as_str().to_owned());
    }
}

/// Discord's 429, as its rate limit documentation shows each scope:
/// `{"message", "retry_after", "global"}` and no `code` (the message is
/// "The resource is being rate limited." for `shared`), with `retry-after`
/// (whole seconds, rounded up: twilight parses an integer),
/// `x-ratelimit-scope`, `x-ratelimit-global: true` on a global one, and the
/// bucket's headers on a per-route one.
pub(crate) fn too_many_requests(limited: &Limited) -> Response {
    let global = limited.scope == RateLimitScope::Global;
    let message = if limited.scope == RateLimitScope::Shared {
        "The resource is being rate limited."
    } else {
        "You are being rate limited."
    };
    let body = json!({
        "message": message,
        "retry_after": seconds(limited.retry_after),
        "global": global,
    });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let retry_after = limited.retry_after.as_millis().div_ceil(1000).max(1);
    headers.insert(RETRY_AFTER, HeaderValue::from(retry_after as u64));
    match &limited.bucket {
        Some(state) => apply_headers(headers, state, Some(limited.scope)),
        None => insert(
            headers,
            "x-ratelimit-scope",
            limited.scope.as_str().to_owned(),
        ),
    }
    if global {
        insert(headers, "x-ratelimit-global", "true".to_owned());
    }
    response
}

/// A scripted REST failure: the next `count` requests (to `route`, a route
/// template like `POST /channels/{channel_id}/messages`, or to any known
/// route) get `response` instead of being served. They spend no rate limit.
///
/// As JSON: `{"response": {"kind": "rate_limited", "scope": "user",
/// "retry_after_ms": 500}, "count": 2, "route": "POST /channels/{channel_id}/messages"}`
/// or `{"response": {"kind": "server_error", "status": 503}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestFault {
    pub response: RestFaultResponse,
    #[serde(default = "one")]
    pub count: u32,
    #[serde(default)]
    pub route: Option<String>,
}

fn one() -> u32 {
    1
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RestFaultResponse {
    /// A 429 with Discord's body and headers for `scope`.
    RateLimited {
        scope: RateLimitScope,
        retry_after_ms: u64,
    },
    /// 500, 502 or 503 with a Discord-like JSON body.
    ServerError { status: u16 },
}

impl RestFaultResponse {
    /// Why Discord could not send this, if it could not.
    pub(crate) fn invalid(&self) -> Option<String> {
        match *self {
            Self::ServerError { status } if ![500, 502, 503].contains(&status) => {
                Some(format!("status {status} is not one of 500, 502, 503"))
            }
            _ => None,
        }
    }
}

impl RestFault {
    /// Why Discord could not send this, if it could not.
    pub(crate) fn invalid(&self) -> Option<String> {
        self.response
            .invalid()
            .or_else(|| (self.count == 0).then(|| "count must be at least 1".to_owned()))
    }
}

/// Body of a scripted 5xx.
pub(crate) fn server_error(status: u16) -> Response {
    let (status, message) = match status {
        502 => (StatusCode::BAD_GATEWAY, "502: Bad Gateway"),
        503 => (StatusCode::SERVICE_UNAVAILABLE, "503: Service Unavailable"),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "500: Internal Server Error",
        ),
    };
    crate::rest::json_error(status, message, 0)
}

/// Scripted faults waiting for their requests, oldest first.
#[derive(Debug, Default)]
pub(crate) struct RestFaults {
    queue: Mutex<Vec<RestFault>>,
}

impl RestFaults {
    pub(crate) fn push(&self, fault: RestFault) {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(fault);
    }

    /// The response the oldest fault matching `route` prescribes, spending
    /// one of its count.
    pub(crate) fn take(&self, route: &str) -> Option<RestFaultResponse> {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let index = queue
            .iter()
            .position(|f| f.route.as_deref().is_none_or(|r| r == route))?;
        let fault = &mut queue[index];
        let response = fault.response.clone();
        fault.count -= 1;
        if fault.count == 0 {
            queue.remove(index);
        }
        Some(response)
    }
}

/// REST faults at random: each request to a known route that no scripted
/// fault took gets one of `faults` (uniformly) with probability `share`,
/// drawn from the simulator's `seed`, so the same requests in the same order
/// get the same faults. Like scripted ones they spend no rate limit and are
/// recorded with `injected`; `retry_after_ms` is not scaled.
///
/// As TOML: `random_rest_faults = { share = 0.02, faults = [{ kind =
/// "server_error", status = 503 }] }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RandomRestFaults {
    /// Fraction of requests (0..=1) that get a fault; 0 disables them.
    pub share: f64,
    /// What to draw from. The default: a 1 s 429 of each scope, and 500,
    /// 502, 503.
    pub faults: Vec<RestFaultResponse>,
}

impl Default for RandomRestFaults {
    fn default() -> Self {
        let limited = |scope| RestFaultResponse::RateLimited {
            scope,
            retry_after_ms: 1000,
        };
        Self {
            share: 0.0,
            faults: vec![
                limited(RateLimitScope::User),
                limited(RateLimitScope::Global),
                limited(RateLimitScope::Shared),
                RestFaultResponse::ServerError { status: 500 },
                RestFaultResponse::ServerError { status: 502 },
                RestFaultResponse::ServerError { status: 503 },
            ],
        }
    }
}

impl RandomRestFaults {
    /// The first reason the plan cannot run, if any.
    pub(crate) fn invalid(&self) -> Option<(&'static str, String)> {
        if !(0.0..=1.0).contains(&self.share) {
            return Some(("random_rest_faults.share", "must be between 0 and 1".into()));
        }
        if self.share > 0.0 && self.faults.is_empty() {
            return Some((
                "random_rest_faults.faults",
                "must not be empty when share is above 0".into(),
            ));
        }
        self.faults
            .iter()
            .find_map(RestFaultResponse::invalid)
            .map(|reason| ("random_rest_faults.faults", reason))
    }
}

/// The seeded draws of [`RandomRestFaults`], one per eligible request.
#[derive(Debug)]
pub(crate) struct RandomRestFaultSource {
    plan: RandomRestFaults,
    rng: Mutex<SmallRng>,
}

impl RandomRestFaultSource {
    pub(crate) fn new(plan: RandomRestFaults, seed: u64) -> Self {
        Self {
            plan,
            rng: Mutex::new(SmallRng::seed_from_u64(seed ^ 0x4e57_fa17)),
        }
    }

    /// The fault for the next request, if it gets one.
    pub(crate) fn draw(&self) -> Option<RestFaultResponse> {
        let faults = &self.plan.faults;
        if self.plan.share <= 0.0 || faults.is_empty() {
            return None;
        }
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        if rng.random::<f64>() >= self.plan.share {
            return None;
        }
        Some(faults[rng.random_range(0..faults.len())].clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The address of a caller without the bot token.
    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn key(major: &str) -> RouteKey {
        RouteKey {
            route: "POST /channels/{channel_id}/messages",
            class: LimitClass::ChannelMessages,
            major: major.to_owned(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn route_buckets_are_per_major_parameter_and_reset() {
        let limiter = RateLimiter::new(Clock::new(1.0), RestLimits::default());
        let now = Instant::now();
        for left in (0..5).rev() {
            let state = limiter.check(&key("1"), now, Caller::Bot).unwrap();
            assert_eq!((state.limit, state.remaining), (5, left));
            assert_eq!(state.reset_after, Duration::from_secs(5));
        }
        let limited = limiter.check(&key("1"), now, Caller::Bot).unwrap_err();
        assert_eq!(limited.scope, RateLimitScope::User);
        assert_eq!(limited.retry_after, Duration::from_secs(5));
        // Another channel has its own bucket, same id.
        let other = limiter.check(&key("2"), now, Caller::Bot).unwrap();
        assert_eq!(other.remaining, 4);
        assert_eq!(other.bucket, bucket_hash(key("1").route));
        let later = now + Duration::from_secs(5);
        assert_eq!(
            limiter
                .check(&key("1"), later, Caller::Bot)
                .unwrap()
                .remaining,
            4
        );
    }

    #[tokio::test(start_paused = true)]
    async fn global_limit_spares_interactions() {
        let limiter = RateLimiter::new(Clock::new(1.0), RestLimits::default());
        let now = Instant::now();
        for channel in 0..50 {
            limiter
                .check(&key(&channel.to_string()), now, Caller::Bot)
                .unwrap();
        }
        let limited = limiter.check(&key("99"), now, Caller::Bot).unwrap_err();
        assert_eq!(limited.scope, RateLimitScope::Global);
        assert!(limited.bucket.is_none());
        let callback = RouteKey {
            route: "POST /interactions/{interaction_id}/{interaction_token}/callback",
            class: LimitClass::Interactions,
            major: "7".to_owned(),
        };
        limiter.check(&callback, now, Caller::Ip(HOME)).unwrap();
        // Exactly one second: not a millisecond early.
        let almost = now + Duration::from_millis(999);
        assert!(limiter.check(&key("99"), almost, Caller::Bot).is_err());
        limiter
            .check(&key("99"), now + Duration::from_secs(1), Caller::Bot)
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn unauthenticated_requests_are_limited_apart_from_the_bot_token() {
        let limiter = RateLimiter::new(Clock::new(1.0), RestLimits::default());
        let now = Instant::now();
        let gateway = |n: u32| RouteKey {
            route: "GET /gateway",
            class: LimitClass::Other,
            major: n.to_string(),
        };
        for n in 0..50 {
            limiter.check(&gateway(n), now, Caller::Ip(HOME)).unwrap();
        }
        let limited = limiter
            .check(&gateway(50), now, Caller::Ip(HOME))
            .unwrap_err();
        assert_eq!(limited.scope, RateLimitScope::Global);
        // Another address has a window of its own.
        let elsewhere = Caller::Ip(IpAddr::from([127, 0, 0, 2]));
        limiter.check(&gateway(51), now, elsewhere).unwrap();
        // The bot token's 50 are untouched.
        for channel in 0..50 {
            limiter
                .check(&key(&channel.to_string()), now, Caller::Bot)
                .unwrap();
        }
        assert!(limiter.check(&key("99"), now, Caller::Bot).is_err());
    }

    #[test]
    fn random_faults_follow_the_seed() {
        let plan = RandomRestFaults {
            share: 0.2,
            ..RandomRestFaults::default()
        };
        assert!(plan.invalid().is_none());
        let draws = |seed| {
            let source = RandomRestFaultSource::new(plan.clone(), seed);
            (0..2000).map(|_| source.draw()).collect::<Vec<_>>()
        };
        let first = draws(7);
        assert_eq!(first, draws(7));
        assert_ne!(first, draws(8));
        let faults = first.iter().flatten().count();
        assert!((300..500).contains(&faults), "{faults} of 2000");
        for kind in &plan.faults {
            assert!(
                first.iter().flatten().any(|f| f == kind),
                "{kind:?} never drawn"
            );
        }
        let off = RandomRestFaultSource::new(RandomRestFaults::default(), 7);
        assert!((0..100).all(|_| off.draw().is_none()));
        let bad = RandomRestFaults {
            share: 0.1,
            faults: vec![RestFaultResponse::ServerError { status: 504 }],
        };
        assert_eq!(bad.invalid().unwrap().0, "random_rest_faults.faults");
        let bad = RandomRestFaults {
            share: 1.5,
            ..RandomRestFaults::default()
        };
        assert_eq!(bad.invalid().unwrap().0, "random_rest_faults.share");
    }

    #[test]
    fn faults_are_spent_in_order_and_by_route() {
        let faults = RestFaults::default();
        faults.push(RestFault {
            response: RestFaultResponse::ServerError { status: 502 },
            count: 2,
            route: Some("GET /users/@me".to_owned()),
        });
        faults.push(RestFault {
            response: RestFaultResponse::ServerError { status: 500 },
            count: 1,
            route: None,
        });
        let status = |r: Option<RestFaultResponse>| match r {
            Some(RestFaultResponse::ServerError { status }) => Some(status),
            _ => None,
        };
        assert_eq!(status(faults.take("GET /gateway/bot")), Some(500));
        assert_eq!(status(faults.take("GET /gateway/bot")), None);
        assert_eq!(status(faults.take("GET /users/@me")), Some(502));
        assert_eq!(status(faults.take("GET /users/@me")), Some(502));
        assert_eq!(status(faults.take("GET /users/@me")), None);
        let json = r#"{"response":{"kind":"rate_limited","scope":"shared","retry_after_ms":10}}"#;
        let fault: RestFault = serde_json::from_str(json).unwrap();
        assert_eq!(fault.count, 1);
        assert!(fault.invalid().is_none());
    }
}
