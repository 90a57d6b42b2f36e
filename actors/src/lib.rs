//! The bot itself: guild actors behind a router, fed by the shards, replying over REST.
//!
//! ```text
//! ShardRunner ─deliver─► EventIngress ─► node cache (twilight-cache-inmemory)
//!                                     └─► GuildRouter ─► GuildActor (one per guild)
//!                                                          ├─► Replies ─► Rest (Discord REST)
//!                                                          └─► storage (guild config)
//! ```
//!
//! Invariants:
//! - Nothing on the shard's path awaits a guild: ingress updates the cache and enqueues.
//! - Events of one guild are handled by one actor in gateway order.
//! - A config change is durable in storage before the actor applies or acknowledges it.
//! - Stopping drains: every guild actor handles what its mailbox holds before it stops.
//! - Nothing on the event path can stop the router (no `?` on a cast to a guild actor).
//! - This crate reads no environment variables and speaks no gRPC: `cluster` assembles it.

mod announcements;
mod automod;
mod cache;
mod calls;
mod choices;
mod commands;
mod components;
mod dead_letters;
mod departures;
mod entitlements;
mod error;
mod feature;
mod features;
mod guild;
mod ingress;
mod local_calls;
mod member_access;
pub mod metrics;
mod moderation;
mod observer;
mod permissions;
mod privacy;
mod replies;
pub mod rest;
mod router;
mod runtime;
mod slash;
mod snapshot;
mod tickets;
mod usage;
mod workflows;

pub use cache::{REQUIRED_RESOURCES, cache_resources, event_types_for, guild_lists_for};
pub use calls::{
    AUDIT_CONFIG_CHANGE, AUDIT_CONFIG_ROLLBACK, CallSource, Caller, ChannelSummary,
    ConfigAuditDetails, GuildCall, GuildCallError, GuildCalls, GuildRequest, GuildResponse,
    GuildSummary, MemberAccess, NativeRuleStatus, NativeSync, RoleSummary, RuleMatch,
    ScheduleStatus, change_config_key,
};
pub use choices::{CHANGES_EVERY, CHOICE_KEPT};
pub use commands::{apply_config_key, show_config_key};
pub use dead_letters::{DeadLetter, DeadLetters};
pub use departures::Departures;
pub use error::{ActorsError, CacheResourcesError, ConfigChangeError};
pub use guild::{GuildActor, GuildMsg};
pub use ingress::EventIngress;
pub use local_calls::LocalGuildCalls;
pub use moderation::{parse_duration, show_duration};
pub use observer::{EventObserver, HandledEvent};
pub use permissions::OwnRoles;
pub use replies::{Deferred, Replies};
pub use rest::Rest;
pub use router::{
    Delivery, GuildRouter, NewShardProgress, RouterMsg, RouterStats, Services, ShardCount,
    ShardCounts,
};
pub use runtime::RuntimeConfig;
pub use slash::slash_commands;
pub use snapshot::{cached_guild, load_shard_cache, take_shard_cache};
pub use tokio_util::task::TaskTracker;
pub use usage::CommandUsage;
pub use workflows::{
    RECENT_EVENTS as RECENT_WORKFLOW_EVENTS, RecentEvent, SampleEvent, SampleEventKind,
    SandboxLimit, WorkflowOff, WorkflowOutcome, WorkflowTrace, WorkflowTraceStep,
};

use protonn_shard::{EventTypeFlags, Intents};
use twilight_cache_inmemory::ResourceType;

/// Gateway intents the handlers need. MESSAGE_CONTENT is privileged: it must be enabled for
/// the bot in Discord's developer portal, or Discord closes the shard with 4014.
pub fn intents() -> Intents {
    // Reactions: workflow triggers.
    Intents::GUILDS
        | Intents::GUILD_MESSAGES
        | Intents::MESSAGE_CONTENT
        | Intents::GUILD_MESSAGE_REACTIONS
        // Automod's native rules: Discord tells the bot what its AutoMod blocked.
        | Intents::AUTO_MODERATION_EXECUTION
}

/// [`intents`], with GUILD_MEMBERS when the runtime asks for members' events
/// ([`RuntimeConfig::member_events`]).
pub fn intents_for(runtime: &RuntimeConfig) -> Intents {
    if runtime.member_events {
        intents() | Intents::GUILD_MEMBERS
    } else {
        intents()
    }
}

/// Event types the handlers and the cache use; twilight skips deserialising the rest.
pub fn event_types() -> EventTypeFlags {
    EventTypeFlags::GUILD_CREATE
        | EventTypeFlags::GUILD_UPDATE
        | EventTypeFlags::GUILD_DELETE
        | EventTypeFlags::ROLE_CREATE
        | EventTypeFlags::ROLE_UPDATE
        | EventTypeFlags::ROLE_DELETE
        | EventTypeFlags::MESSAGE_CREATE
        // Automod checks edits; tickets note edits and deletions for their transcripts.
        | EventTypeFlags::MESSAGE_UPDATE
        | EventTypeFlags::MESSAGE_DELETE
        | EventTypeFlags::INTERACTION_CREATE
        // Without GUILD_MEMBERS, only the bot's own: its roles, for permission checks.
        | EventTypeFlags::MEMBER_UPDATE
        // Workflow triggers; members' joins, leaves and role changes come only to a bot
        // with the privileged GUILD_MEMBERS intent (`intents_for`, when configured).
        | EventTypeFlags::MEMBER_ADD
        | EventTypeFlags::MEMBER_REMOVE
        | EventTypeFlags::REACTION_ADD
        | EventTypeFlags::REACTION_REMOVE
        // Discord app subscriptions: premium. UPDATE and DELETE are not asked for: twilight
        // 0.18 cannot parse them (`entitlements.rs` reads the list instead).
        | EventTypeFlags::ENTITLEMENT_CREATE
        | EventTypeFlags::AUTO_MODERATION_ACTION_EXECUTION
}

/// What the node cache keeps by default: the guild (for its owner) and roles (for
/// permission checks), the [`REQUIRED_RESOURCES`]. Channels and members are the expensive
/// parts and no handler needs them yet; a node may keep more ([`cache_resources`]).
pub fn cached_resources() -> ResourceType {
    REQUIRED_RESOURCES
}
