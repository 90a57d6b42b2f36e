//! Metric names of the shard layer, described and pre-registered by [`describe`].

use metrics::{Unit, describe_counter, describe_gauge, gauge};

use crate::ShardPhase;

/// Shards of this node in each phase (`state` label: one of [`ShardPhase::LABELS`]).
pub const SHARDS_BY_STATE: &str = "protonn_shard_state_shards";
/// Gateway dispatches received, by event type (`event` label: Discord's event name).
pub const EVENTS_RECEIVED: &str = "protonn_shard_events_received_total";
/// Connections closed by Discord with a fatal code (`code` label), after which the shard stops.
pub const FATAL_CLOSES: &str = "protonn_shard_fatal_closes_total";
/// Connections lost or closed that the shard recovers from by reconnecting (`shard` label).
pub const DISCONNECTS: &str = "protonn_shard_disconnects_total";

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
        FATAL_CLOSES,
        Unit::Count,
        "Gateway closes with a fatal code (bad token, invalid shard, bad intents); the shard stays stopped."
    );
    describe_counter!(
        DISCONNECTS,
        Unit::Count,
        "Gateway connections lost or closed that the shard recovers from by resuming or re-identifying."
    );
    for state in ShardPhase::LABELS {
        gauge!(SHARDS_BY_STATE, "state" => state).set(0.0);
    }
}
