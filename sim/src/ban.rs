//! Discord's invalid-request limit: responses with status 401, 403 or 429
//! (except 429s of scope `shared`) count as invalid; `limit` of them within
//! a sliding window bans the client from the whole REST API for a while, as
//! Discord's Cloudflare layer does (10,000 per 10 min by default).
//!
//! Discord documents the limit but not the ban's length nor its exact
//! response. Here the ban lasts `rest_limits.ban_ms` (1 h by default,
//! scaled) and every REST request meanwhile gets [`banned_response`]: a 429
//! with `retry-after` and the JSON body clients have reported from Discord,
//! no `x-ratelimit-*` headers. Banned requests do not count as invalid, so
//! a client that keeps knocking does not extend its ban; the count starts
//! afresh once a ban begins.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use tokio::time::Instant;

use crate::clock::Clock;
use crate::ratelimit::{RateLimitScope, RestLimits};

/// Whether a response counts towards the invalid-request limit.
pub(crate) fn counts_as_invalid(status: u16, scope: Option<RateLimitScope>) -> bool {
    match status {
        401 | 403 => true,
        429 => scope != Some(RateLimitScope::Shared),
        _ => false,
    }
}

#[derive(Debug)]
struct State {
    /// Arrival times of the invalid requests inside the window, oldest
    /// first; at most `limit` long.
    recent: VecDeque<Instant>,
    banned_until: Option<Instant>,
}

#[derive(Debug)]
pub(crate) struct InvalidRequests {
    limit: usize,
    window: Duration,
    ban: Duration,
    state: Mutex<State>,
}

impl InvalidRequests {
    pub(crate) fn new(clock: Clock, limits: &RestLimits) -> Self {
        let limit = usize::try_from(limits.invalid_requests.limit).unwrap_or(usize::MAX);
        Self {
            limit,
            window: clock.scaled(Duration::from_millis(limits.invalid_requests.per_ms)),
            ban: clock.scaled(Duration::from_millis(limits.ban_ms)),
            state: Mutex::new(State {
                recent: VecDeque::new(),
                banned_until: None,
            }),
        }
    }

    /// What is left of the ban at `now`, if one is on.
    pub(crate) fn banned(&self, now: Instant) -> Option<Duration> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state
            .banned_until
            .filter(|&until| until > now)
            .map(|until| until - now)
    }

    /// Counts one invalid request; `true` if it starts a ban.
    pub(crate) fn record(&self, now: Instant) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.banned_until.is_some_and(|until| until > now) {
            return false;
        }
        while state
            .recent
            .front()
            .is_some_and(|&at| now.saturating_duration_since(at) >= self.window)
        {
            state.recent.pop_front();
        }
        state.recent.push_back(now);
        if state.recent.len() < self.limit {
            return false;
        }
        state.recent.clear();
        state.banned_until = Some(now + self.ban);
        true
    }
}

/// What Discord's users report getting while banned: 429,
/// `{"message": ..., "code": 0}`, no rate limit headers; `retry-after` (whole
/// seconds, rounded up) says when the ban ends.
pub(crate) fn banned_response(left: Duration) -> Response {
    let mut response = crate::rest::json_error(
        StatusCode::TOO_MANY_REQUESTS,
        "You are being blocked from accessing our API temporarily due to exceeding our \
         rate limits frequently.",
        0,
    );
    let retry_after = left.as_millis().div_ceil(1000).max(1);
    response.headers_mut().insert(
        RETRY_AFTER,
        HeaderValue::from(u64::try_from(retry_after).unwrap_or(u64::MAX)),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::RateLimit;

    fn limits(limit: u32) -> RestLimits {
        RestLimits {
            invalid_requests: RateLimit {
                limit,
                per_ms: 10_000,
            },
            ban_ms: 60_000,
            ..RestLimits::default()
        }
    }

    #[test]
    fn which_statuses_count() {
        assert!(counts_as_invalid(401, None));
        assert!(counts_as_invalid(403, None));
        assert!(counts_as_invalid(429, Some(RateLimitScope::User)));
        assert!(counts_as_invalid(429, Some(RateLimitScope::Global)));
        assert!(!counts_as_invalid(429, Some(RateLimitScope::Shared)));
        for status in [200, 204, 400, 404, 500, 503] {
            assert!(!counts_as_invalid(status, None), "{status}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_limit_within_the_window_bans_for_the_scaled_ban() {
        // Scale 0.5: window 5 s, ban 30 s.
        let invalid = InvalidRequests::new(Clock::new(0.5), &limits(3));
        let start = Instant::now();
        assert!(!invalid.record(start));
        assert!(!invalid.record(start + Duration::from_secs(1)));
        // The first one left the window: still two inside it.
        assert!(!invalid.record(start + Duration::from_secs(5)));
        assert_eq!(invalid.banned(start + Duration::from_secs(5)), None);
        let third = start + Duration::from_millis(5500);
        assert!(invalid.record(third));
        assert_eq!(invalid.banned(third), Some(Duration::from_secs(30)));
        // Knocking during the ban neither counts nor extends it.
        assert!(!invalid.record(third + Duration::from_secs(1)));
        let end = third + Duration::from_secs(30);
        assert_eq!(
            invalid.banned(end - Duration::from_secs(1)),
            Some(Duration::from_secs(1))
        );
        assert_eq!(invalid.banned(end), None);
        // The count started afresh with the ban.
        assert!(!invalid.record(end));
        assert!(!invalid.record(end));
        assert!(invalid.record(end));
    }

    #[test]
    fn banned_response_has_retry_after_and_no_bucket() {
        let response = banned_response(Duration::from_millis(1500));
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        let headers = response.headers();
        assert_eq!(headers[RETRY_AFTER], "2");
        assert_eq!(headers["content-type"], "application/json");
        assert!(headers.get("x-ratelimit-scope").is_none());
    }
}
