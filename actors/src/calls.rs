//! Guild calls: the one way anything outside a guild actor talks to a guild.
//!
//! A call is a typed request addressed by guild id and answered by that guild's actor,
//! wherever it runs. The dashboard, other nodes and the CLI see guilds only through
//! [`GuildCalls`]; `cluster` implements it in process (one node) and over gRPC (a cluster:
//! guild → shard → owning node, from the map the leader publishes). Every type here is
//! serde-serialisable so a transport can carry it as it is.
//!
//! Contract of every implementation:
//! - the call is answered by the guild's actor, in order with the guild's events;
//! - `deadline` bounds the whole call, retries included ([`GuildCallError::TimedOut`]);
//! - a call with an `idempotency_key` that was already applied is answered with the first
//!   answer and applied once, also when retried on another node after a shard move;
//! - [`GuildCallError::Moving`] is retried by the caller's transport until the deadline, so a
//!   caller sees it only when the deadline runs out mid-move.

use std::time::Duration;

use async_trait::async_trait;
use protonn_storage::{
    AnnounceSchedule, AutomodHit, Case, GuildConfig, Repeat, Timestamp, VersionedConfig, Workflow,
};
use serde::{Deserialize, Serialize};

use crate::{ConfigChangeError, RecentEvent, SampleEvent, WorkflowOff, WorkflowTrace};

/// A request to one guild's actor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuildCall {
    pub guild_id: u64,
    /// Who asks; changes are audited under this user and source.
    pub caller: Caller,
    /// Set by callers that may retry a state-changing call (the dashboard sets one per form
    /// submission): the guild applies a key once and answers repeats with the first answer.
    pub idempotency_key: Option<String>,
    /// The whole call's budget, transport retries included.
    pub deadline: Duration,
    pub request: GuildRequest,
}

/// Who made a call, for authorization and the audit log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    /// The Discord user on whose behalf the call is made; `None` for the operator's CLI and
    /// for the bot's own nodes.
    pub user_id: Option<u64>,
    pub source: CallSource,
}

/// Where a call came from, recorded with every change it makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallSource {
    Dashboard,
    Cli,
    Node,
    /// A command typed in Discord (only in audit entries: Discord's path is not a call).
    Discord,
}

impl CallSource {
    pub fn label(self) -> &'static str {
        match self {
            Self::Dashboard => "dashboard",
            Self::Cli => "cli",
            Self::Node => "node",
            Self::Discord => "discord",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum GuildRequest {
    /// The guild's live configuration (the defaults at version 0 if it never saved one).
    ReadConfig,
    /// Replace the configuration if its version is still `expected_version`; answered once
    /// durable and live ([`GuildResponse::Config`]), or [`GuildCallError::Conflict`].
    ChangeConfig {
        config: GuildConfig,
        expected_version: u64,
    },
    /// The stored past versions, newest first.
    ConfigHistory,
    /// Make the content of `to_version` current again, as a new version.
    RollbackConfig {
        to_version: u64,
        expected_version: u64,
    },
    /// What the node's cache knows of the guild now.
    Summary,
    /// The user's permissions in the guild, from the node's cache.
    MemberPermissions {
        user_id: u64,
    },
    /// Moderation cases, newest first: about `target_id` if given, else those numbered
    /// below `before` (all if `None`); 1 to 100 of them ([`GuildResponse::Cases`]).
    Cases {
        target_id: Option<u64>,
        before: Option<u64>,
        limit: u32,
    },
    /// The guild's workflows, definitions included (an export), by id
    /// ([`GuildResponse::Workflows`]).
    ListWorkflows,
    /// Creates or replaces workflow `workflow_id` (an import is a save): the definition is
    /// checked (JSON, fields, templates, regexes, schedule, calls between the guild's
    /// workflows) and refused with [`GuildCallError::Invalid`] saying why, nothing saved;
    /// else saved, live at once, audited ([`GuildResponse::Workflow`]).
    SaveWorkflow {
        workflow_id: u64,
        name: String,
        enabled: bool,
        definition: String,
    },
    SetWorkflowEnabled {
        workflow_id: u64,
        enabled: bool,
    },
    /// Refused while another workflow calls it ([`GuildResponse::WorkflowDeleted`]).
    DeleteWorkflow {
        workflow_id: u64,
    },
    /// Runs a workflow (the saved one, or `definition` if given, unsaved) against a sample
    /// event without any side effect: nothing is sent or stored
    /// ([`GuildResponse::WorkflowTrace`]).
    DryRunWorkflow {
        workflow_id: u64,
        definition: Option<String>,
        sample: SampleEvent,
        /// Replays this one of the guild's recent events instead of `sample`
        /// ([`GuildRequest::RecentWorkflowEvents`]).
        #[serde(default)]
        recent: Option<u64>,
    },
    /// The guild's last messages, joins, leaves and reactions its actor saw, which a dry run
    /// may replay (held in the actor's memory only; bots' and those of members who
    /// restricted processing left out), newest first ([`GuildResponse::RecentWorkflowEvents`]).
    RecentWorkflowEvents,
    /// The last traces of a workflow's real runs on the node holding the guild, oldest first
    /// ([`GuildResponse::WorkflowRuns`]).
    WorkflowRuns {
        workflow_id: u64,
    },
    /// What automod rules in shadow mode would have done, newest first: hits of messages
    /// before `before` (all if `None`); 1 to 100 of them ([`GuildResponse::AutomodHits`]).
    AutomodHits {
        before: Option<u64>,
        limit: u32,
    },
    /// The guild's automod rules run on `content` without any effect: which would fire and
    /// why ([`GuildResponse::AutomodTest`]). Rules on a member's message rate and account
    /// age are not judged from one text.
    AutomodTest {
        content: String,
    },
    /// Whether Discord's own AutoMod runs each native automod rule the plan runs, as
    /// configured, or why not: checked now, against Discord's list
    /// ([`GuildResponse::AutomodNative`]).
    AutomodNative,
    /// The guild's scheduled announcements by id, each with when it sends next and whether
    /// the guild's plan runs it ([`GuildResponse::AnnounceSchedules`]).
    ListAnnounceSchedules,
    /// Creates (`schedule_id: None`, the next free id) or replaces a scheduled announcement:
    /// the channel must be one of the guild's text or announcement channels, a one-off in
    /// the future, a new one within the plan's count; refused with
    /// [`GuildCallError::Invalid`] saying why, nothing saved. Else saved, its next send armed
    /// (a durable timer), audited ([`GuildResponse::AnnounceSchedule`]).
    SaveAnnounceSchedule {
        schedule_id: Option<u64>,
        channel_id: u64,
        message: String,
        repeat: Repeat,
        paused: bool,
    },
    SetAnnounceSchedulePaused {
        schedule_id: u64,
        paused: bool,
    },
    /// ([`GuildResponse::AnnounceScheduleDeleted`]).
    DeleteAnnounceSchedule {
        schedule_id: u64,
    },
}

impl GuildRequest {
    /// Values of the `request` metric label.
    pub const LABELS: [&'static str; 21] = [
        "read_config",
        "change_config",
        "config_history",
        "rollback_config",
        "summary",
        "member_permissions",
        "cases",
        "list_workflows",
        "save_workflow",
        "set_workflow_enabled",
        "delete_workflow",
        "dry_run_workflow",
        "workflow_runs",
        "recent_workflow_events",
        "automod_hits",
        "automod_test",
        "automod_native",
        "list_announce_schedules",
        "save_announce_schedule",
        "set_announce_schedule_paused",
        "delete_announce_schedule",
    ];

    /// The `request` label of the guild-call metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::ReadConfig => "read_config",
            Self::ChangeConfig { .. } => "change_config",
            Self::ConfigHistory => "config_history",
            Self::RollbackConfig { .. } => "rollback_config",
            Self::Summary => "summary",
            Self::MemberPermissions { .. } => "member_permissions",
            Self::Cases { .. } => "cases",
            Self::ListWorkflows => "list_workflows",
            Self::SaveWorkflow { .. } => "save_workflow",
            Self::SetWorkflowEnabled { .. } => "set_workflow_enabled",
            Self::DeleteWorkflow { .. } => "delete_workflow",
            Self::DryRunWorkflow { .. } => "dry_run_workflow",
            Self::WorkflowRuns { .. } => "workflow_runs",
            Self::RecentWorkflowEvents => "recent_workflow_events",
            Self::AutomodHits { .. } => "automod_hits",
            Self::AutomodTest { .. } => "automod_test",
            Self::AutomodNative => "automod_native",
            Self::ListAnnounceSchedules => "list_announce_schedules",
            Self::SaveAnnounceSchedule { .. } => "save_announce_schedule",
            Self::SetAnnounceSchedulePaused { .. } => "set_announce_schedule_paused",
            Self::DeleteAnnounceSchedule { .. } => "delete_announce_schedule",
        }
    }

    /// Whether the request changes the guild (and so is applied once per idempotency key).
    pub fn changes(&self) -> bool {
        matches!(
            self,
            Self::ChangeConfig { .. }
                | Self::RollbackConfig { .. }
                | Self::SaveWorkflow { .. }
                | Self::SetWorkflowEnabled { .. }
                | Self::DeleteWorkflow { .. }
                | Self::SaveAnnounceSchedule { .. }
                | Self::SetAnnounceSchedulePaused { .. }
                | Self::DeleteAnnounceSchedule { .. }
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum GuildResponse {
    Config(VersionedConfig),
    History {
        versions: Vec<VersionedConfig>,
    },
    Summary(GuildSummary),
    Permissions(MemberAccess),
    Cases {
        cases: Vec<Case>,
    },
    Workflows {
        workflows: Vec<Workflow>,
        /// The enabled ones the guild's plan does not run now (kept, switched off), and why.
        #[serde(default)]
        off: Vec<WorkflowOff>,
    },
    Workflow(Workflow),
    WorkflowDeleted {
        existed: bool,
    },
    WorkflowTrace(WorkflowTrace),
    WorkflowRuns {
        traces: Vec<WorkflowTrace>,
    },
    RecentWorkflowEvents {
        events: Vec<RecentEvent>,
    },
    AutomodHits {
        hits: Vec<AutomodHit>,
    },
    AutomodTest {
        matches: Vec<RuleMatch>,
    },
    AutomodNative {
        rules: Vec<NativeRuleStatus>,
    },
    AnnounceSchedules {
        schedules: Vec<ScheduleStatus>,
    },
    AnnounceSchedule(AnnounceSchedule),
    AnnounceScheduleDeleted {
        existed: bool,
    },
}

/// A scheduled announcement as the dashboard lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleStatus {
    pub schedule: AnnounceSchedule,
    /// When it sends next (its durable timer); `None` when paused or a one-off has passed.
    pub next_send: Option<Timestamp>,
    /// Past the guild's plan (a downgrade): kept but not sent.
    pub over_plan: bool,
}

/// A native automod rule (`native: true`) and whether Discord runs it as configured.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NativeRuleStatus {
    pub rule: String,
    pub sync: NativeSync,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum NativeSync {
    /// Discord has the bot's rule of this name, as configured.
    OnDiscord,
    /// It does not, and why (what the bot lacks, or what Discord answered).
    NotOnDiscord { why: String },
}

/// A rule that would fire on a text (automod's "test a message").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleMatch {
    pub rule: String,
    pub why: String,
    /// The rule only reports (shadow mode).
    pub shadow: bool,
    /// What it would do (`delete, timeout 10m`).
    pub actions: String,
}

/// A guild as the node that runs its shard sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuildSummary {
    pub guild_id: u64,
    pub name: String,
    /// Discord's icon hash, if the guild has an icon.
    pub icon: Option<String>,
    pub owner_id: u64,
    pub member_count: Option<u64>,
    /// Sorted by position, then id.
    pub channels: Vec<ChannelSummary>,
    /// Sorted by position (highest first), then id.
    pub roles: Vec<RoleSummary>,
    pub shard_id: u32,
    /// The node name running the shard.
    pub node: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelSummary {
    pub id: u64,
    pub name: String,
    /// Discord's channel type number (0 text, 2 voice, 4 category, 5 announcement, …).
    pub kind: u8,
    pub position: i32,
    pub parent_id: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleSummary {
    pub id: u64,
    pub name: String,
    pub color: u32,
    pub position: i64,
}

/// What a user may do in a guild, computed from the node's cache.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberAccess {
    /// Discord's permission bits in the guild (all bits for the owner).
    pub permissions: u64,
    pub is_owner: bool,
    /// Holds a role of the config's `staff_roles`.
    pub is_staff: bool,
    /// May use the dashboard for this guild: owner, Administrator, Manage Server, or staff.
    pub can_manage: bool,
}

/// Why a guild call failed. Nothing was changed, except for `TimedOut`, after which the
/// call may or may not have been applied (retry it with the same idempotency key).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum GuildCallError {
    /// No shard of this bot can hold the id (not a guild id).
    #[error("unknown guild")]
    UnknownGuild,
    /// The guild's shard runs, but the bot is not in the guild.
    #[error("the bot is not in this guild")]
    BotNotInGuild,
    /// The guild's shard is between owners; retried by the transport until the deadline.
    #[error("the guild is moving to another node")]
    Moving,
    #[error("the guild did not answer in time")]
    TimedOut,
    /// Someone saved another version first.
    #[error("the configuration was changed meanwhile; version {current} is current")]
    Conflict { current: u64 },
    /// Bad request (unknown version, invalid value); the text tells a user what is allowed.
    #[error("{message}")]
    Invalid { message: String },
    /// The call's caller may not do this.
    #[error("not allowed: {message}")]
    Forbidden { message: String },
    /// Storage or the cluster could not serve the call now.
    #[error("unavailable: {message}")]
    Unavailable { message: String },
}

impl GuildCallError {
    /// Values of the `outcome` metric label besides `ok`.
    pub const LABELS: [&'static str; 8] = [
        "unknown_guild",
        "bot_not_in_guild",
        "moving",
        "timed_out",
        "conflict",
        "invalid",
        "forbidden",
        "unavailable",
    ];

    /// The `outcome` label of the guild-call metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::UnknownGuild => "unknown_guild",
            Self::BotNotInGuild => "bot_not_in_guild",
            Self::Moving => "moving",
            Self::TimedOut => "timed_out",
            Self::Conflict { .. } => "conflict",
            Self::Invalid { .. } => "invalid",
            Self::Forbidden { .. } => "forbidden",
            Self::Unavailable { .. } => "unavailable",
        }
    }

    /// Whether the same call may be answered differently later (and so is not remembered
    /// under its idempotency key).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Moving | Self::TimedOut | Self::Unavailable { .. }
        )
    }
}

/// The `details` of the audit entry a config change writes (JSON), actions
/// [`AUDIT_CONFIG_CHANGE`] and [`AUDIT_CONFIG_ROLLBACK`]. The entry's `actor_id` is the
/// caller's user id, 0 for the CLI and nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigAuditDetails {
    pub source: CallSource,
    /// The call's idempotency key: how a retry on another node finds that it was applied.
    pub idempotency_key: Option<String>,
    pub before: VersionedConfig,
    pub after: VersionedConfig,
}

/// Audit action of a config change ([`GuildRequest::ChangeConfig`] or a command).
pub const AUDIT_CONFIG_CHANGE: &str = "config.change";
/// Audit action of a [`GuildRequest::RollbackConfig`].
pub const AUDIT_CONFIG_ROLLBACK: &str = "config.rollback";

/// Talks to guilds; the only door the dashboard and the CLI have to them.
#[async_trait]
pub trait GuildCalls: Send + Sync + 'static {
    async fn call(&self, call: GuildCall) -> Result<GuildResponse, GuildCallError>;
}

/// Changes one config key of a guild through guild calls: reads the config, applies `key`,
/// and saves it on `expected_version` (the version read when `None`). Durable and live in
/// the guild's actor when it answers. The key-by-key path of callers outside the actor: the
/// operator's CLI, and a node's own API.
pub async fn change_config_key(
    calls: &dyn GuildCalls,
    caller: Caller,
    guild_id: u64,
    (key, value): (&str, &str),
    expected_version: Option<u64>,
    deadline: Duration,
) -> Result<VersionedConfig, ConfigChangeError> {
    let call = |request| GuildCall {
        guild_id,
        caller: caller.clone(),
        idempotency_key: None,
        deadline,
        request,
    };
    let current = match calls.call(call(GuildRequest::ReadConfig)).await {
        Ok(GuildResponse::Config(current)) => current,
        Ok(other) => return Err(unexpected(&other)),
        Err(err) => return Err(config_error(err)),
    };
    let config =
        crate::apply_config_key(&current.config, key, value).map_err(ConfigChangeError::Invalid)?;
    let change = GuildRequest::ChangeConfig {
        config,
        expected_version: expected_version.unwrap_or(current.version),
    };
    match calls.call(call(change)).await {
        Ok(GuildResponse::Config(saved)) => Ok(saved),
        Ok(other) => Err(unexpected(&other)),
        Err(err) => Err(config_error(err)),
    }
}

fn config_error(err: GuildCallError) -> ConfigChangeError {
    match err {
        GuildCallError::Conflict { current } => ConfigChangeError::Conflict { current },
        GuildCallError::Invalid { message } => ConfigChangeError::Invalid(message),
        other => ConfigChangeError::Unavailable(other.to_string()),
    }
}

fn unexpected(answer: &GuildResponse) -> ConfigChangeError {
    ConfigChangeError::Unavailable(format!("unexpected answer: {answer:?}"))
}
