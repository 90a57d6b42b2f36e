//! Metric names of the actor runtime, described and pre-registered by [`describe`].

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};

use crate::commands::{COMMAND_LABELS, OUTCOME_LABELS};
use crate::replies::REST_ROUTE_LABELS;
use crate::rest::{OUTCOME_LABELS as REST_OUTCOME_LABELS, Scope};
use crate::{GuildCallError, GuildRequest};

/// Guild actors resident on this node.
pub const GUILDS_ACTIVE: &str = "protonn_actors_guilds_active";
/// Commands handled, by `command` and `outcome`.
pub const COMMANDS_HANDLED: &str = "protonn_actors_commands_handled_total";
/// Guild actors that failed and were dropped, to be restarted from storage on the next event.
pub const GUILD_FAILURES: &str = "protonn_actors_guild_failures_total";
/// Announcement deliveries decided by this node, by `outcome` and `reason`.
pub const ANNOUNCEMENT_DELIVERIES: &str = "protonn_announcements_deliveries_total";
/// Announcement DMs decided by this node, by `outcome` and `reason`.
pub const ANNOUNCEMENT_DMS: &str = "protonn_announcements_dms_total";
/// Guilds' scheduled announcements this node fired, by `outcome`.
pub const SCHEDULED_ANNOUNCEMENTS: &str = "protonn_announcements_scheduled_total";
/// Discord REST requests sent, by `route` and `outcome`.
pub const REST_REQUESTS: &str = "protonn_rest_requests_total";
/// Time a REST request waited for a permit of the global rate limit (the node's share).
pub const REST_PERMIT_WAIT: &str = "protonn_rest_permit_wait_seconds";
/// Buckets of [`REST_PERMIT_WAIT`].
pub const REST_PERMIT_WAIT_BUCKETS: [f64; 11] = [
    0.001, 0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// 429 responses from Discord, by `scope` (`user`, `global`, `shared`).
pub const REST_RATE_LIMITED: &str = "protonn_rest_rate_limited_total";
/// REST requests waiting on this node (in their lanes, for buckets and permits).
pub const REST_QUEUED: &str = "protonn_rest_queued_requests";
/// Invalid responses (401, 403, 429 but shared) in the last 10 minutes: the most of this
/// node's count and the whole bot's as the coordinator last reported it.
pub const REST_INVALID_REQUESTS: &str = "protonn_rest_invalid_requests";
/// 1 while a 401 from Discord has stopped all REST use, until an operator acts.
pub const REST_HALTED: &str = "protonn_rest_halted";
/// Replies not sent because the node cache shows the bot lacks the permissions they need in
/// the channel: Discord would answer 403, an invalid request.
pub const SENDS_SKIPPED: &str = "protonn_rest_sends_skipped_total";
/// Guild actors started (first event, or rehydration after passivation).
pub const GUILD_SPAWNS: &str = "protonn_actors_guild_spawns_total";
/// Guild actors stopped by the runtime, by `reason` (one of [`PASSIVATION_REASONS`]).
pub const PASSIVATIONS: &str = "protonn_actors_passivations_total";
/// Values of the `reason` label of [`PASSIVATIONS`].
pub const PASSIVATION_REASONS: [&str; 3] = ["idle", "evicted", "removed"];
/// Events not delivered to a full guild mailbox, by `event` and `action` (`shed` or `busy`).
pub const EVENTS_SHED: &str = "protonn_actors_events_shed_total";
/// Events queued to a guild mailbox already at its limit (never dropped), by `event`.
pub const MAILBOX_OVERFLOW: &str = "protonn_actors_mailbox_overflow_total";
/// Panics while handling an event (each is retried after reloading the guild's state).
pub const EVENT_PANICS: &str = "protonn_actors_event_panics_total";
/// Messages and interactions replayed after a node crash that the crashed node had already
/// taken, not handled again.
pub const REPLAYED_COMMANDS_SKIPPED: &str = "protonn_actors_replayed_commands_skipped_total";
/// Events a guild actor refused because the node may no longer handle their shard (fenced
/// since they were queued; the shard's next owner resumes before them).
pub const FENCED_EVENTS_REFUSED: &str = "protonn_actors_fenced_events_refused_total";
/// Workflow runs, by `outcome` (one of [`crate::workflows`]' run outcomes).
pub const WORKFLOW_RUNS: &str = "protonn_workflows_runs_total";
/// Workflow sandbox limits reached, by `limit` (fuel, deadline, api_calls, …).
pub const WORKFLOW_LIMITS_HIT: &str = "protonn_workflows_limits_hit_total";
/// Loads of a guild's workflows into its actor, by `outcome` (`loaded`, `error`, and
/// `overflow` for each event not held while loading).
pub const WORKFLOW_ACTIVATIONS: &str = "protonn_workflows_activations_total";
/// Events set aside after panicking on every try.
pub const DEAD_LETTERS: &str = "protonn_actors_dead_letters_total";
/// Events queued in all guild mailboxes of this node (the router's accounting), set at each
/// sweep.
pub const MAILBOX_QUEUED: &str = "protonn_actors_mailbox_queued_events";
/// Events queued in this node's fullest guild mailbox, set at each sweep: one flooded guild
/// shows here when the total does not stand out.
pub const MAILBOX_DEEPEST: &str = "protonn_actors_mailbox_deepest_events";
/// Time a guild actor took to handle one event, retries after a panic included.
pub const EVENT_HANDLING: &str = "protonn_actors_event_handling_duration_seconds";
/// Buckets of [`EVENT_HANDLING`]: from a cached config (well under a millisecond) to a store
/// call that waits out a failover (10 s).
pub const EVENT_HANDLING_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Guild calls made by this process, by `request` and `outcome` (`ok` or the error's kind).
pub const GUILD_CALLS: &str = "protonn_guild_calls_total";
/// Time a guild call took for its caller, transport retries included, by `request`.
pub const GUILD_CALL_DURATION: &str = "protonn_guild_call_duration_seconds";
/// Buckets of [`GUILD_CALL_DURATION`]: an in-process call takes microseconds, a routed one
/// a few milliseconds, one across a shard move up to its deadline (seconds).
pub const GUILD_CALL_DURATION_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0,
];
/// Config changes saved whose audit entry could not be written.
pub const AUDIT_FAILURES: &str = "protonn_actors_audit_failures_total";
/// Durable timers found due by this node's polls and handed to their guild, by `outcome`
/// of the claim (one of [`TIMER_OUTCOMES`]).
pub const TIMERS_DUE: &str = "protonn_actors_timers_due_total";
/// `claimed` (this node acts on it), `taken` (claimed elsewhere, or gone meanwhile),
/// `error` (the store did not answer; the next poll tries again).
pub const TIMER_OUTCOMES: [&str; 3] = ["claimed", "taken", "error"];
/// Automod rules that matched a message, by `trigger` (the rule's kind) and `mode`
/// (`enforced`, `shadow` for a rule that only reports, `native` for one Discord enforced).
pub const AUTOMOD_HITS: &str = "protonn_actors_automod_hits_total";
/// Values of the `mode` label of [`AUTOMOD_HITS`].
pub const AUTOMOD_MODES: [&str; 3] = ["enforced", "shadow", "native"];

/// Discord entitlements (app subscriptions) this node applied, by outcome.
pub const ENTITLEMENTS: &str = "protonn_premium_entitlements_total";

/// Tickets opened on this node (a ticket is open from this until its close).
pub const TICKETS_OPENED: &str = "protonn_tickets_opened_total";
/// Tickets closed on this node; opened minus closed, summed over nodes, is what is open.
pub const TICKETS_CLOSED: &str = "protonn_tickets_closed_total";
/// Time from a ticket's opening to its first response (recorded at its first close).
pub const TICKET_FIRST_RESPONSE: &str = "protonn_tickets_first_response_seconds";
/// Time from a ticket's opening to its close.
pub const TICKET_RESOLUTION: &str = "protonn_tickets_resolution_seconds";
/// Buckets of the ticket durations: a minute to a week.
pub const TICKET_DURATION_BUCKETS: [f64; 9] = [
    60.0, 300.0, 900.0, 3_600.0, 14_400.0, 43_200.0, 86_400.0, 259_200.0, 604_800.0,
];

/// Counts one guild call and its duration, by its request's and outcome's bounded labels.
pub fn record_guild_call(
    request: &'static str,
    outcome: Result<(), &GuildCallError>,
    elapsed: std::time::Duration,
) {
    let outcome = outcome.map_or_else(GuildCallError::label, |()| "ok");
    counter!(GUILD_CALLS, "request" => request, "outcome" => outcome).increment(1);
    histogram!(GUILD_CALL_DURATION, "request" => request).record(elapsed.as_secs_f64());
}

/// The guild-call metrics alone: what a process that only calls guilds (`protonn web`)
/// exports besides its own.
pub fn describe_guild_calls() {
    describe_counter!(
        GUILD_CALLS,
        Unit::Count,
        "Guild calls made by this process, by request and outcome (ok or the error's kind)."
    );
    describe_histogram!(
        GUILD_CALL_DURATION,
        Unit::Seconds,
        "Time a guild call took for its caller, transport retries included, by request."
    );
    for request in GuildRequest::LABELS {
        for outcome in std::iter::once("ok").chain(GuildCallError::LABELS) {
            counter!(GUILD_CALLS, "request" => request, "outcome" => outcome).absolute(0);
        }
        // Registers the series with no sample yet.
        let _ = histogram!(GUILD_CALL_DURATION, "request" => request);
    }
}

fn describe_workflows() {
    describe_counter!(
        WORKFLOW_RUNS,
        Unit::Count,
        "Workflow runs, by outcome (completed, conditions_failed, stopped, waiting, limit, failed)."
    );
    describe_counter!(
        WORKFLOW_LIMITS_HIT,
        Unit::Count,
        "Workflow runs stopped or skipped by a sandbox limit, by limit."
    );
    describe_counter!(
        WORKFLOW_ACTIVATIONS,
        Unit::Count,
        "Loads of a guild's workflows into its actor, by outcome (loaded, error; overflow counts events not held while loading)."
    );
    for outcome in crate::workflows::RUN_OUTCOMES {
        counter!(WORKFLOW_RUNS, "outcome" => outcome).absolute(0);
    }
    for limit in crate::workflows::LIMIT_LABELS {
        counter!(WORKFLOW_LIMITS_HIT, "limit" => limit).absolute(0);
    }
    for outcome in ["loaded", "error", "overflow"] {
        counter!(WORKFLOW_ACTIVATIONS, "outcome" => outcome).absolute(0);
    }
}

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
    describe_histogram!(
        REST_PERMIT_WAIT,
        Unit::Seconds,
        "Time a REST request waited for a permit of the bot's global rate limit (this node's share)."
    );
    describe_counter!(
        REST_RATE_LIMITED,
        Unit::Count,
        "429 responses from Discord, by scope (user: a route bucket, global: the bot's 50/s, shared: a shared resource)."
    );
    describe_gauge!(
        REST_QUEUED,
        Unit::Count,
        "REST requests waiting on this node for their bucket or a permit."
    );
    describe_gauge!(
        REST_INVALID_REQUESTS,
        Unit::Count,
        "Invalid responses (401, 403, non-shared 429) in the last 10 minutes, this node's or the whole bot's, whichever is more; Discord bans at 10,000."
    );
    describe_gauge!(
        REST_HALTED,
        "1 while a 401 from Discord has stopped all REST use, until an operator acts."
    );
    describe_counter!(
        SENDS_SKIPPED,
        Unit::Count,
        "Replies not sent because the node cache shows the bot lacks the permissions in the channel (Discord would answer 403, an invalid request)."
    );
    describe_counter!(
        REPLAYED_COMMANDS_SKIPPED,
        Unit::Count,
        "Messages and interactions replayed after a node crash that the crashed node had already taken; not handled again."
    );
    describe_counter!(
        FENCED_EVENTS_REFUSED,
        Unit::Count,
        "Events a guild actor refused because the node may no longer handle their shard (its lease lapsed or the shard was fenced after they were queued); the shard's next owner resumes before them."
    );
    describe_counter!(
        GUILD_SPAWNS,
        Unit::Count,
        "Guild actors started: a guild's first event that is work, or after a passivation."
    );
    describe_counter!(
        PASSIVATIONS,
        Unit::Count,
        "Guild actors stopped by the runtime, by reason (idle, evicted over the resident cap, removed: the guild left the node cache, the bot removed from it or its shard moved)."
    );
    describe_counter!(
        EVENTS_SHED,
        Unit::Count,
        "Events not delivered because the guild's mailbox was full, by event type and action (shed, busy reply)."
    );
    describe_counter!(
        MAILBOX_OVERFLOW,
        Unit::Count,
        "Events queued past a guild's mailbox limit because they are never dropped, by event type."
    );
    describe_counter!(
        EVENT_PANICS,
        Unit::Count,
        "Panics while a guild actor handled an event; the event is retried with the state reloaded."
    );
    describe_counter!(
        DEAD_LETTERS,
        Unit::Count,
        "Events set aside after panicking on every try."
    );
    describe_gauge!(
        MAILBOX_QUEUED,
        Unit::Count,
        "Events queued in all guild mailboxes of this node."
    );
    describe_gauge!(
        MAILBOX_DEEPEST,
        Unit::Count,
        "Events queued in this node's fullest guild mailbox."
    );
    describe_histogram!(
        EVENT_HANDLING,
        Unit::Seconds,
        "Time a guild actor took to handle one event, retries included."
    );
    gauge!(MAILBOX_QUEUED).set(0.0);
    gauge!(MAILBOX_DEEPEST).set(0.0);
    let _ = histogram!(EVENT_HANDLING);
    describe_counter!(
        AUDIT_FAILURES,
        Unit::Count,
        "Config changes saved whose audit entry could not be written."
    );
    counter!(AUDIT_FAILURES).absolute(0);
    describe_counter!(
        TIMERS_DUE,
        Unit::Count,
        "Durable timers found due and handed to their guild, by the outcome of the claim."
    );
    for outcome in TIMER_OUTCOMES {
        counter!(TIMERS_DUE, "outcome" => outcome).absolute(0);
    }
    describe_workflows();
    describe_counter!(
        ANNOUNCEMENT_DELIVERIES,
        Unit::Count,
        "Service announcement deliveries this node decided, by outcome (sent, skipped, failed) and reason."
    );
    for (outcome, reason) in crate::announcements::DELIVERY_OUTCOMES {
        counter!(ANNOUNCEMENT_DELIVERIES, "outcome" => outcome, "reason" => reason).absolute(0);
    }
    describe_counter!(
        ANNOUNCEMENT_DMS,
        Unit::Count,
        "Service announcement DMs to consenting users this node decided, by outcome (sent, skipped, failed) and reason."
    );
    for (outcome, reason) in crate::announcements::DM_OUTCOMES {
        counter!(ANNOUNCEMENT_DMS, "outcome" => outcome, "reason" => reason).absolute(0);
    }
    describe_counter!(
        SCHEDULED_ANNOUNCEMENTS,
        Unit::Count,
        "Guilds' scheduled announcements this node fired, by outcome (sent, over_plan, channel_gone, missing_permission, discord_error, not_sent)."
    );
    for outcome in crate::announcements::SEND_OUTCOMES {
        counter!(SCHEDULED_ANNOUNCEMENTS, "outcome" => outcome).absolute(0);
    }
    describe_counter!(TICKETS_OPENED, Unit::Count, "Support tickets opened.");
    describe_counter!(TICKETS_CLOSED, Unit::Count, "Support tickets closed.");
    describe_histogram!(
        TICKET_FIRST_RESPONSE,
        Unit::Seconds,
        "Time from a support ticket's opening to its first response: the first message by someone other than the opener and bots, or a staff claim, whichever came first (recorded at the ticket's first close)."
    );
    describe_histogram!(
        TICKET_RESOLUTION,
        Unit::Seconds,
        "Time from a support ticket's opening to its close."
    );
    counter!(TICKETS_OPENED).absolute(0);
    counter!(TICKETS_CLOSED).absolute(0);
    let _ = histogram!(TICKET_FIRST_RESPONSE);
    let _ = histogram!(TICKET_RESOLUTION);
    describe_counter!(
        AUTOMOD_HITS,
        Unit::Count,
        "Automod rules that matched a message, by the rule's trigger and mode (enforced, shadow, or native: enforced by Discord's AutoMod)."
    );
    for trigger in crate::automod::TRIGGER_KINDS {
        for mode in AUTOMOD_MODES {
            counter!(AUTOMOD_HITS, "trigger" => trigger, "mode" => mode).absolute(0);
        }
    }
    describe_counter!(
        ENTITLEMENTS,
        Unit::Count,
        "Discord entitlements (app subscriptions) from events or reconciliation, by what applying them did."
    );
    for outcome in crate::entitlements::OUTCOMES {
        counter!(ENTITLEMENTS, "outcome" => outcome).absolute(0);
    }
    describe_guild_calls();
    gauge!(GUILDS_ACTIVE).set(0.0);
    counter!(GUILD_FAILURES).absolute(0);
    counter!(GUILD_SPAWNS).absolute(0);
    counter!(EVENT_PANICS).absolute(0);
    counter!(DEAD_LETTERS).absolute(0);
    counter!(REPLAYED_COMMANDS_SKIPPED).absolute(0);
    counter!(FENCED_EVENTS_REFUSED).absolute(0);
    counter!(SENDS_SKIPPED).absolute(0);
    for reason in PASSIVATION_REASONS {
        counter!(PASSIVATIONS, "reason" => reason).absolute(0);
    }
    // Messages are what a flooded guild queues past its limit; other types appear when they do.
    counter!(MAILBOX_OVERFLOW, "event" => "MESSAGE_CREATE").absolute(0);
    for (event, action) in [
        ("TYPING_START", "shed"),
        ("PRESENCE_UPDATE", "shed"),
        ("INTERACTION_CREATE", "busy"),
    ] {
        counter!(EVENTS_SHED, "event" => event, "action" => action).absolute(0);
    }
    for command in COMMAND_LABELS
        .into_iter()
        .chain(crate::features::command_labels())
    {
        for outcome in OUTCOME_LABELS {
            counter!(COMMANDS_HANDLED, "command" => command, "outcome" => outcome).absolute(0);
        }
    }
    gauge!(REST_QUEUED).set(0.0);
    for scope in Scope::LABELS {
        counter!(REST_RATE_LIMITED, "scope" => scope).absolute(0);
    }
    for route in REST_ROUTE_LABELS {
        for outcome in REST_OUTCOME_LABELS {
            counter!(REST_REQUESTS, "route" => route, "outcome" => outcome).absolute(0);
        }
    }
}
