//! Metric names of the shard layer, described and pre-registered by [`describe`].
//!
//! Labels stay bounded: shard ids, event type names, reasons and close codes from fixed sets.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram, gauge};

use crate::{IdentifyReason, ShardPhase};

/// Shards of this node in each phase (`state`: one of [`ShardPhase::LABELS`]).
pub const SHARDS_BY_STATE: &str = "protonn_shard_state_shards";
/// Gateway dispatches received, by event type (`event`: Discord's event name).
pub const EVENTS_RECEIVED: &str = "protonn_shard_events_received_total";
/// Gateway dispatches received, by `shard` (its rate is the shard's events/s).
pub const SHARD_EVENTS: &str = "protonn_shard_dispatches_total";
/// Connections closed by Discord with a fatal code (`code`), after which the shard stops.
pub const FATAL_CLOSES: &str = "protonn_shard_fatal_closes_total";
/// Connections lost or closed and re-established, by `shard` and `reason`
/// (one of [`RECONNECT_REASONS`]).
pub const RECONNECTS: &str = "protonn_shard_reconnects_total";
/// Sessions resumed (no IDENTIFY spent), by `shard`.
pub const RESUMES: &str = "protonn_shard_resumes_total";
/// IDENTIFYs sent, by `shard` and `reason` (one of [`IdentifyReason::LABELS`]).
pub const IDENTIFIES: &str = "protonn_shard_identifies_total";
/// Time a shard waited for its IDENTIFY permit.
pub const IDENTIFY_WAIT: &str = "protonn_shard_identify_wait_seconds";
/// Buckets of [`IDENTIFY_WAIT`]: up to a 1,000-shard cold start at max_concurrency 1.
pub const IDENTIFY_WAIT_BUCKETS: [f64; 12] = [
    0.01, 0.1, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 1800.0, 5400.0,
];
/// Session starts left in Discord's daily budget, as the scheduler counts them.
pub const IDENTIFY_BUDGET_REMAINING: &str = "protonn_shard_identify_budget_remaining";
/// IDENTIFY requests the scheduler holds back because the budget is at its reserve.
pub const IDENTIFY_BLOCKED: &str = "protonn_shard_identify_blocked_requests";
/// Last heartbeat round trip, by `shard`.
pub const HEARTBEAT_LATENCY: &str = "protonn_shard_heartbeat_latency_seconds";
/// Droppable events (typing, presence) shed because the shard's buffer was full, by `event`.
pub const EVENTS_SHED: &str = "protonn_shard_events_shed_total";
/// Times a shard stopped reading its socket because its buffer was full of events that
/// must not be dropped, by `shard`.
pub const BUFFER_STALLS: &str = "protonn_shard_buffer_stalls_total";
/// Events an adopted shard received that its crashed previous owner may already have handed
/// to its sink (sequence at most the adoption's `seen_up_to`), by `shard`. They are delivered
/// again: this counts the at-least-once cost of a crash.
pub const REPLAYED_DUPLICATES: &str = "protonn_shard_replayed_duplicates_total";

/// Values of the `reason` label of [`RECONNECTS`].
pub const RECONNECT_REASONS: [&str; 5] = [
    "reconnect_requested",
    "resumable_close",
    "session_close",
    "connection_lost",
    "server_restart",
];

/// Describes every metric of this crate and sets the gauges to zero, so that dashboards see
/// each series from the start.
pub fn describe() {
    describe_gauge!(
        SHARDS_BY_STATE,
        Unit::Count,
        "Shards of this node in each state."
    );
    describe_counter!(
        EVENTS_RECEIVED,
        Unit::Count,
        "Gateway dispatch events received, by event type."
    );
    describe_counter!(
        SHARD_EVENTS,
        Unit::Count,
        "Gateway dispatch events received, by shard."
    );
    describe_counter!(
        FATAL_CLOSES,
        Unit::Count,
        "Gateway closes with a fatal code (bad token, invalid shard, bad intents); the shard stays stopped."
    );
    describe_counter!(
        RECONNECTS,
        Unit::Count,
        "Gateway connections lost or closed and re-established, by shard and reason."
    );
    describe_counter!(
        RESUMES,
        Unit::Count,
        "Sessions resumed without an IDENTIFY, by shard."
    );
    describe_counter!(
        IDENTIFIES,
        Unit::Count,
        "IDENTIFYs sent, by shard and reason."
    );
    describe_histogram!(
        IDENTIFY_WAIT,
        Unit::Seconds,
        "Time a shard waited for its IDENTIFY permit."
    );
    describe_gauge!(
        IDENTIFY_BUDGET_REMAINING,
        Unit::Count,
        "Session starts left in Discord's daily budget."
    );
    describe_gauge!(
        IDENTIFY_BLOCKED,
        Unit::Count,
        "IDENTIFY requests held back because the daily budget is down to its reserve."
    );
    describe_gauge!(
        HEARTBEAT_LATENCY,
        Unit::Seconds,
        "Last gateway heartbeat round trip, by shard."
    );
    describe_counter!(
        EVENTS_SHED,
        Unit::Count,
        "Droppable events (typing, presence) shed because a shard's buffer was full, by event type."
    );
    describe_counter!(
        BUFFER_STALLS,
        Unit::Count,
        "Times a shard paused reading because its buffer was full of events that are never dropped."
    );
    describe_counter!(
        REPLAYED_DUPLICATES,
        Unit::Count,
        "Events delivered again after a crash resume because the previous owner may already have delivered them, by shard."
    );
    for state in ShardPhase::LABELS {
        gauge!(SHARDS_BY_STATE, "state" => state).set(0.0);
    }
    gauge!(IDENTIFY_BLOCKED).set(0.0);
    for code in FATAL_CODES {
        metrics::counter!(FATAL_CLOSES, "code" => code.to_string()).absolute(0);
    }
    for kind in crate::buffer::DROPPABLE {
        let event = kind.name().unwrap_or("unknown");
        metrics::counter!(EVENTS_SHED, "event" => event).absolute(0);
    }
}

/// Close codes after which Discord forbids reconnecting.
const FATAL_CODES: [u16; 6] = [4004, 4010, 4011, 4012, 4013, 4014];

/// Creates the per-shard series of `shard` at zero, when the node takes the shard on.
pub(crate) fn register_shard(shard: &str) {
    use metrics::counter;
    for reason in IdentifyReason::LABELS {
        counter!(IDENTIFIES, "shard" => shard.to_owned(), "reason" => reason).absolute(0);
    }
    for reason in RECONNECT_REASONS {
        counter!(RECONNECTS, "shard" => shard.to_owned(), "reason" => reason).absolute(0);
    }
    counter!(RESUMES, "shard" => shard.to_owned()).absolute(0);
    counter!(SHARD_EVENTS, "shard" => shard.to_owned()).absolute(0);
    counter!(BUFFER_STALLS, "shard" => shard.to_owned()).absolute(0);
    counter!(REPLAYED_DUPLICATES, "shard" => shard.to_owned()).absolute(0);
}

/// The `reason` label of a reconnect after the gateway closed with `code` (`None`: the
/// connection ended without a close frame).
pub(crate) fn reconnect_reason(code: Option<u16>) -> &'static str {
    match code {
        None => "connection_lost",
        // Discord restarting or asking us to reconnect elsewhere.
        Some(1001 | 1012) => "server_restart",
        // Codes after which Discord no longer holds the session.
        Some(1000 | 4007 | 4009) => "session_close",
        Some(_) => "resumable_close",
    }
}
