//! Per-route buckets learned from Discord's `x-ratelimit-*` headers, and the reading of a
//! 429. A bucket is Discord's bucket id (shared by some routes) and the request's top-level
//! resource; until a route's bucket id is known, the route name stands in for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use hyper::header::{HeaderMap, RETRY_AFTER};
use tokio::time::{Duration, Instant};

/// Known buckets are forgotten once this many exist and they have reset.
const PRUNE_AT: usize = 10_000;

/// The top-level resource of a path (Discord's "major parameter"): requests for different
/// ones never share a bucket. For interaction and webhook routes it holds the token, so it
/// is never logged.
pub(super) fn major(path: &str) -> &str {
    let path = path.split_once('?').map_or(path, |(path, _)| path);
    let segments: usize = match path.split('/').next() {
        Some("channels" | "guilds" | "interactions") => 2,
        Some("webhooks") => 3,
        _ => 0,
    };
    let end = path
        .match_indices('/')
        .nth(segments.saturating_sub(1))
        .map_or(path.len(), |(at, _)| at);
    if segments == 0 { "" } else { &path[..end] }
}

/// Interaction responses and interaction webhooks are exempt from the global limit.
pub(super) fn is_interaction(path: &str) -> bool {
    path.starts_with("interactions/") || path.starts_with("webhooks/")
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum BucketId {
    Route(&'static str),
    Discord(Arc<str>),
}

#[derive(Debug)]
struct Bucket {
    remaining: u32,
    reset_at: Instant,
}

#[derive(Default)]
struct State {
    ids: HashMap<&'static str, Arc<str>>,
    buckets: HashMap<(BucketId, String), Bucket>,
}

#[derive(Default)]
pub(super) struct Buckets {
    state: Mutex<State>,
}

impl State {
    fn key(&self, route: &'static str, major: &str) -> (BucketId, String) {
        let id = self.ids.get(route).map_or(BucketId::Route(route), |id| {
            BucketId::Discord(Arc::clone(id))
        });
        (id, major.to_owned())
    }
}

impl Buckets {
    /// Takes one request of the bucket, or says until when it is exhausted.
    pub(super) fn take(&self, route: &'static str, major: &str) -> Result<(), Instant> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let key = state.key(route, major);
        let Some(bucket) = state.buckets.get_mut(&key) else {
            return Ok(());
        };
        let now = Instant::now();
        if bucket.remaining > 0 {
            bucket.remaining -= 1;
            Ok(())
        } else if bucket.reset_at > now {
            Err(bucket.reset_at)
        } else {
            // A new window: its size comes with the next response.
            state.buckets.remove(&key);
            Ok(())
        }
    }

    /// Learns the bucket from a response's headers; responses without them change nothing.
    pub(super) fn learn(&self, route: &'static str, major: &str, headers: &HeaderMap) {
        let Some(seen) = Headers::parse(headers) else {
            return;
        };
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.buckets.len() >= PRUNE_AT {
            state.buckets.retain(|_, bucket| bucket.reset_at > now);
        }
        if let Some(id) = seen.bucket
            && state.ids.get(route).is_none_or(|known| **known != *id)
        {
            state.ids.insert(route, id.into());
        }
        let key = state.key(route, major);
        let reset_at = now + seen.reset_after;
        let bucket = state.buckets.entry(key).or_insert(Bucket {
            remaining: seen.remaining,
            reset_at,
        });
        // Responses of one window can arrive out of order: the fewest remaining wins.
        if reset_at > bucket.reset_at + Duration::from_millis(500) {
            *bucket = Bucket {
                remaining: seen.remaining,
                reset_at,
            };
        } else {
            bucket.remaining = bucket.remaining.min(seen.remaining);
            bucket.reset_at = bucket.reset_at.max(reset_at);
        }
    }

    /// A 429 for this bucket: nothing more goes into it for `retry_after`.
    pub(super) fn exhaust(&self, route: &'static str, major: &str, retry_after: Duration) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let key = state.key(route, major);
        let reset_at = Instant::now() + retry_after;
        let bucket = state.buckets.entry(key).or_insert(Bucket {
            remaining: 0,
            reset_at,
        });
        bucket.remaining = 0;
        bucket.reset_at = bucket.reset_at.max(reset_at);
    }
}

/// What a response's `x-ratelimit-*` headers say about its bucket.
struct Headers {
    bucket: Option<String>,
    remaining: u32,
    reset_after: Duration,
}

impl Headers {
    fn parse(headers: &HeaderMap) -> Option<Self> {
        let text = |name: &str| headers.get(name)?.to_str().ok();
        let remaining = text("x-ratelimit-remaining")?.parse().ok()?;
        let reset_after = seconds(text("x-ratelimit-reset-after")?)?;
        Some(Self {
            bucket: text("x-ratelimit-bucket").map(str::to_owned),
            remaining,
            reset_after,
        })
    }
}

/// `x-ratelimit-scope` of a 429.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The route's bucket, for this bot.
    User,
    /// The bot's global limit.
    Global,
    /// A resource shared with others; not an invalid request on Discord.
    Shared,
}

impl Scope {
    pub(crate) const LABELS: [&'static str; 3] = ["user", "global", "shared"];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Global => "global",
            Self::Shared => "shared",
        }
    }
}

/// A 429: its scope and how long to wait.
#[derive(Debug, PartialEq)]
pub(super) struct TooManyRequests {
    pub(super) scope: Scope,
    pub(super) retry_after: Duration,
}

/// Without a readable `retry-after`, this long (Discord always sends one).
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

impl TooManyRequests {
    pub(super) fn parse(headers: &HeaderMap, body: &[u8]) -> Self {
        let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
        let global_flag = text("x-ratelimit-global") == Some("true");
        let scope = match text("x-ratelimit-scope") {
            Some("shared") => Scope::Shared,
            Some("global") => Scope::Global,
            _ if global_flag => Scope::Global,
            _ => Scope::User,
        };
        // The body's `retry_after` has milliseconds; the header whole seconds.
        let from_body = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|body| body.get("retry_after")?.as_f64())
            .and_then(|secs| Duration::try_from_secs_f64(secs).ok());
        let retry_after = from_body
            .or_else(|| seconds(text(RETRY_AFTER.as_str())?))
            .unwrap_or(DEFAULT_RETRY_AFTER);
        Self { scope, retry_after }
    }
}

fn seconds(text: &str) -> Option<Duration> {
    Duration::try_from_secs_f64(text.trim().parse().ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn the_major_parameter_is_the_top_level_resource() {
        assert_eq!(major("channels/12/messages"), "channels/12");
        assert_eq!(major("channels/12"), "channels/12");
        assert_eq!(major("guilds/5/members/7?limit=1"), "guilds/5");
        assert_eq!(major("webhooks/1/tok/messages/@original"), "webhooks/1/tok");
        assert_eq!(major("interactions/9/tok/callback"), "interactions/9");
        assert_eq!(major("applications/1/commands"), "");
        assert_eq!(major("users/@me"), "");
        assert!(is_interaction("interactions/9/tok/callback"));
        assert!(!is_interaction("channels/12/messages"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_bucket_is_learned_spent_and_reset() {
        let buckets = Buckets::default();
        // Unknown: go.
        assert_eq!(buckets.take("create_message", "channels/1"), Ok(()));
        let seen = headers(&[
            ("x-ratelimit-bucket", "abc"),
            ("x-ratelimit-remaining", "1"),
            ("x-ratelimit-reset-after", "5.000"),
        ]);
        buckets.learn("create_message", "channels/1", &seen);
        assert_eq!(buckets.take("create_message", "channels/1"), Ok(()));
        let reset = buckets.take("create_message", "channels/1").unwrap_err();
        assert_eq!(reset - Instant::now(), Duration::from_secs(5));
        // Another channel is another bucket.
        assert_eq!(buckets.take("create_message", "channels/2"), Ok(()));
        // A later response of the same window never raises what is left.
        buckets.learn("create_message", "channels/1", &seen);
        assert!(buckets.take("create_message", "channels/1").is_err());
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(buckets.take("create_message", "channels/1"), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_exhausts_the_bucket_for_its_retry_after() {
        let buckets = Buckets::default();
        buckets.exhaust("create_message", "channels/1", Duration::from_millis(1500));
        let reset = buckets.take("create_message", "channels/1").unwrap_err();
        assert_eq!(reset - Instant::now(), Duration::from_millis(1500));
    }

    #[test]
    fn a_429_is_read_by_scope_with_the_bodys_precise_retry_after() {
        let limited = TooManyRequests::parse(
            &headers(&[("x-ratelimit-scope", "user"), ("retry-after", "2")]),
            br#"{"message":"You are being rate limited.","retry_after":1.234,"global":false}"#,
        );
        assert_eq!(
            limited,
            TooManyRequests {
                scope: Scope::User,
                retry_after: Duration::from_millis(1234)
            }
        );
        let global = TooManyRequests::parse(
            &headers(&[("x-ratelimit-global", "true"), ("retry-after", "3")]),
            b"not json",
        );
        assert_eq!(global.scope, Scope::Global);
        assert_eq!(global.retry_after, Duration::from_secs(3));
        let shared = TooManyRequests::parse(&headers(&[("x-ratelimit-scope", "shared")]), b"");
        assert_eq!(shared.scope, Scope::Shared);
        assert_eq!(shared.retry_after, DEFAULT_RETRY_AFTER);
    }
}
