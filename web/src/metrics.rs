//! The dashboard's metrics (its guild calls are counted by the `GuildCalls` implementation,
//! `protonn_guild_calls_total`): names, descriptions, and pre-registration so dashboards never
//! meet a missing series. Labels are bounded: route templates, status codes, fixed reasons.

use std::time::Duration;

use metrics::{Unit, counter, describe_counter, describe_histogram, histogram};

pub const REQUESTS: &str = "protonn_web_requests_total";
pub const REQUEST_DURATION: &str = "protonn_web_request_duration_seconds";
pub const LOGINS: &str = "protonn_web_logins_total";
pub const REJECTED: &str = "protonn_web_rejected_total";
pub const PADDLE_WEBHOOKS: &str = "protonn_web_paddle_webhooks_total";
pub const PADDLE_EVENTS: &str = "protonn_web_paddle_events_total";

const PADDLE_EVENT_OUTCOMES: [&str; 3] = ["applied", "stale", "invalid"];

pub(crate) const LOGIN_OUTCOMES: [&str; 5] =
    ["ok", "denied", "bad_state", "discord_error", "logout"];
const REJECT_REASONS: [&str; 10] = [
    "not_logged_in",
    "session_expired",
    "discord_revoked",
    "bad_state",
    "csrf",
    "forbidden",
    "bad_form",
    "too_large",
    "conflict",
    "guild_not_found",
];

/// Describes every metric and creates the series a dashboard plots from the start.
pub fn describe() {
    describe_counter!(
        REQUESTS,
        "Dashboard HTTP requests by route template and status."
    );
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "Time to answer a dashboard request, by route template."
    );
    describe_counter!(LOGINS, "Dashboard logins and logouts by outcome.");
    describe_counter!(
        REJECTED,
        "Dashboard requests refused, by reason (bad state, missing CSRF, forbidden guild, …)."
    );
    describe_counter!(
        PADDLE_WEBHOOKS,
        "Paddle webhook deliveries by outcome: received, duplicate, or why refused."
    );
    describe_counter!(
        PADDLE_EVENTS,
        "Paddle events taken from the inbox by outcome: applied, stale (older than the stored state), invalid."
    );
    for outcome in ["received", "duplicate"]
        .into_iter()
        .chain(crate::paddle::Refusal::ALL.map(|r| r.label()))
    {
        counter!(PADDLE_WEBHOOKS, "outcome" => outcome).absolute(0);
    }
    for outcome in PADDLE_EVENT_OUTCOMES {
        counter!(PADDLE_EVENTS, "outcome" => outcome).absolute(0);
    }
    for outcome in LOGIN_OUTCOMES {
        counter!(LOGINS, "outcome" => outcome).absolute(0);
    }
    for reason in REJECT_REASONS {
        counter!(REJECTED, "reason" => reason).absolute(0);
    }
    // Series of the route-labelled metrics exist once a route is used; the picker's are
    // created now so the metrics are present (at zero) from the start.
    counter!(REQUESTS, "route" => "/guilds", "status" => "200").absolute(0);
    let _ = histogram!(REQUEST_DURATION, "route" => "/guilds");
}

/// Buckets of [`REQUEST_DURATION`]: a page is a few guild calls, each under the 5 s deadline.
pub const REQUEST_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

pub(crate) fn request(route: String, status: u16, took: Duration) {
    histogram!(REQUEST_DURATION, "route" => route.clone()).record(took.as_secs_f64());
    counter!(REQUESTS, "route" => route, "status" => status.to_string()).increment(1);
}

pub(crate) fn login(outcome: &'static str) {
    counter!(LOGINS, "outcome" => outcome).increment(1);
}

pub(crate) fn rejected(reason: &'static str) {
    counter!(REJECTED, "reason" => reason).increment(1);
}

pub(crate) fn paddle_webhook(outcome: &'static str) {
    counter!(PADDLE_WEBHOOKS, "outcome" => outcome).increment(1);
}

pub(crate) fn paddle_event(outcome: &'static str) {
    counter!(PADDLE_EVENTS, "outcome" => outcome).increment(1);
}
