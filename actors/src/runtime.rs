//! How guild actors live: mailbox bounds, passivation, crash retries, cooldowns, and what
//! the node cache they read keeps.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use protonn_storage::Plan;

use twilight_cache_inmemory::ResourceType;
use twilight_model::gateway::event::{Event, EventType};

/// Knobs of the guild actor runtime; the defaults suit a node of a large bot.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Events queued for one guild before its mailbox counts as full. Past it, typing and
    /// presence are shed and interactions answered "busy"; nothing else is dropped.
    pub mailbox_limit: u32,
    /// A guild actor idle this long is stopped; its next event rehydrates it from storage.
    pub idle_after: Duration,
    /// Guild actors resident at most; past it the least recently active idle ones go first.
    pub max_resident: usize,
    /// How often the router passivates and evicts.
    pub sweep_every: Duration,
    /// Tries of an event whose handling panics, each after reloading the guild's state;
    /// after the last it goes to the dead letters.
    pub max_attempts: u32,
    /// Pause before the first retry of a panicked event; doubles per try.
    pub retry_backoff: Duration,
    /// An interaction whose answer takes longer is acknowledged first and answered by an
    /// edit (Discord allows 3 s for the first response); zero defers every interaction.
    pub defer_after: Duration,
    /// How long a guild's data is kept after the bot was removed from it, in case it is
    /// added back; then it is erased.
    pub removed_guild_grace: Duration,
    /// Time one user must wait between two commands in a guild.
    pub user_cooldown: Duration,
    /// Commands one guild may run per `guild_window` before further ones are refused.
    pub guild_commands: u32,
    pub guild_window: Duration,
    /// What the node cache keeps; [`crate::REQUIRED_RESOURCES`] always, whatever this says.
    /// Check a configured set with [`crate::cache_resources`], and have the shards
    /// deserialise [`crate::event_types_for`] it, or the extra resources go stale.
    pub cache_resources: ResourceType,
    /// Retention periods of the store this node opens itself (the policy's by default).
    pub retention: protonn_storage::Retention,
    /// How often the router looks for durable timers fallen due in the guilds it holds.
    pub timer_poll_every: Duration,
    /// How long a node holds a due timer it claimed before another may take it: longer than
    /// the action takes (a REST call or two), short enough that a crashed node's timers are
    /// not late by much.
    pub timer_lease: Duration,
    /// How often command usage counts are written (one batch); what a crash loses at most.
    pub usage_flush_every: Duration,
    /// A support ticket without a message for this long is closed by the bot (one period
    /// for every guild until guilds choose their own).
    pub ticket_idle_close: Duration,
    /// Discord SKUs (app subscriptions) and the plan each grants; an entitlement to another
    /// SKU is not premium here.
    pub premium_skus: Arc<HashMap<u64, Plan>>,
    /// How often the node holding shard 0 reads Discord's entitlements: how late a renewal
    /// or a refund is seen at most (their events cannot be parsed, see `entitlements.rs`).
    pub entitlement_reconcile_every: Duration,
    /// How long a guild actor trusts the plan it read (it reads again sooner when the premium
    /// slot it read ends): how late a slot given, moved or refunded shows in what runs.
    pub plan_recheck_every: Duration,
    /// How often the router starts a round of announcement deliveries (when none runs).
    pub announce_poll_every: Duration,
    /// Workflow runs a guild may have parked in durable waits at once; a run that would wait
    /// beyond stops (limit `waits`). Bounds the guild's timers and what they hold.
    pub workflow_waits_per_guild: usize,
    /// Whether the bot asks for the privileged GUILD_MEMBERS intent (it must be enabled for
    /// the application in Discord's developer portal first, or every shard is refused):
    /// members' joins, leaves and role changes, which workflows' member and role triggers need.
    pub member_events: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            mailbox_limit: 1_000,
            idle_after: Duration::from_secs(600),
            max_resident: 250_000,
            sweep_every: Duration::from_secs(5),
            max_attempts: 3,
            retry_backoff: Duration::from_millis(50),
            defer_after: Duration::from_millis(1_500),
            removed_guild_grace: Duration::from_secs(30 * 86_400),
            user_cooldown: Duration::from_secs(2),
            guild_commands: 30,
            guild_window: Duration::from_secs(10),
            cache_resources: crate::cached_resources(),
            retention: protonn_storage::Retention::POLICY,
            timer_poll_every: Duration::from_secs(5),
            timer_lease: Duration::from_secs(60),
            usage_flush_every: Duration::from_secs(30),
            ticket_idle_close: Duration::from_secs(7 * 86_400),
            premium_skus: Arc::default(),
            entitlement_reconcile_every: Duration::from_secs(600),
            plan_recheck_every: Duration::from_secs(300),
            announce_poll_every: Duration::from_secs(10),
            workflow_waits_per_guild: 100,
            member_events: false,
        }
    }
}

/// What the router does with an event for a guild whose mailbox holds `pending` events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    Deliver,
    /// Dropped and counted: nothing a handler relies on.
    Shed,
    /// Not delivered; the user is told the bot is busy.
    Busy,
}

pub(crate) fn admit(event: &Event, pending: u32, limit: u32) -> Admission {
    if pending < limit {
        return Admission::Deliver;
    }
    match event.kind() {
        EventType::TypingStart | EventType::PresenceUpdate => Admission::Shed,
        EventType::InteractionCreate => Admission::Busy,
        // Messages, guild and role updates, …: handlers and the cache's consumers need
        // every one, in order, so they are queued past the limit (and counted).
        _ => Admission::Deliver,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_mailbox_sheds_only_what_may_be_lost() {
        let typing = serde_json::from_str(r#"{"channel_id":"2","timestamp":1,"user_id":"3"}"#)
            .map(|t| Event::TypingStart(Box::new(t)))
            .unwrap();
        assert_eq!(admit(&typing, 0, 10), Admission::Deliver);
        assert_eq!(admit(&typing, 10, 10), Admission::Shed);
        assert_eq!(admit(&Event::Resumed, 10, 10), Admission::Deliver);
        assert_eq!(admit(&Event::GatewayReconnect, 99, 10), Admission::Deliver);
    }
}
