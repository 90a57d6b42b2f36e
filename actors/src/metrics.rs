//! Metric names of the actor runtime, described and pre-registered by [`describe`].

use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};

use crate::commands::{COMMAND_LABELS, OUTCOME_LABELS};
use crate::replies::{REST_OUTCOME_LABELS, REST_ROUTE_LABELS};

/// Guild actors resident on this node.
pub const GUILDS_ACTIVE: &str = "protonn_actors_guilds_active";
/// Commands handled, by `command` and `outcome`.
pub const COMMANDS_HANDLED: &str = "protonn_actors_commands_handled_total";
/// Guild actors that failed and were dropped, to be restarted from storage on the next event.
pub const GUILD_FAILURES: &str = "protonn_actors_guild_failures_total";
/// Discord REST requests sent, by `route` and `outcome`.
pub const REST_REQUESTS: &str = "protonn_rest_requests_total";

pub fn describe() {
    describe_gauge!(
        GUILDS_ACTIVE,
        Unit::Count,
        "Guild actors resident on this node."
    );
    describe_counter!(
        COMMANDS_HANDLED,
        Unit::Count,
        "Bot commands handled, by command and outcome."
    );
    describe_counter!(
        GUILD_FAILURES,
        Unit::Count,
        "Guild actors that failed; each restarts with its state reloaded from storage."
    );
    describe_counter!(
        REST_REQUESTS,
        Unit::Count,
        "Discord REST requests sent, by route and outcome."
    );
    gauge!(GUILDS_ACTIVE).set(0.0);
    counter!(GUILD_FAILURES).absolute(0);
    for command in COMMAND_LABELS {
        for outcome in OUTCOME_LABELS {
            counter!(COMMANDS_HANDLED, "command" => command, "outcome" => outcome).absolute(0);
        }
    }
    for route in REST_ROUTE_LABELS {
        for outcome in REST_OUTCOME_LABELS {
            counter!(REST_REQUESTS, "route" => route, "outcome" => outcome).absolute(0);
        }
    }
}
