//! Persistence for Pro-tonn, behind repository traits.
//!
//! This crate owns every byte we keep. It is the only crate that imports a database driver
//! (`redb` and `scylla`) and it knows nothing of actors, the gateway or gRPC: callers see
//! repository traits and plain data types keyed by raw Discord ids (`u64`), with time as a
//! [`Timestamp`] the caller passes (so retention is testable).
//!
//! - [`EmbeddedStore`] (redb) is the default: one file, nothing to install.
//! - [`ScyllaStore`] is the production store; `schema/*.cql` holds its schema.
//! - Both implement every trait below and pass one conformance suite (`tests/conformance.rs`).
//!
//! Invariants:
//! - A write that returned `Ok` is durable: it survives a crash of the process.
//! - Versioned documents, shard assignments and leases change only through compare-and-set
//!   (a write transaction on redb, an LWT on ScyllaDB).
//! - Retention is enforced by the store: TTLs on ScyllaDB, an expiry index and
//!   [`spawn_sweeper`] on redb.
//! - Every row that names a user can be found from the user id, so export and erasure never
//!   scan ([`DataRights`]).

mod accounts;
mod announcements;
mod audit;
mod automod;
mod backfill;
mod billing;
mod cluster;
mod embedded;
mod error;
mod guild_config;
mod lease;
mod mentions;
mod metered;
pub mod metrics;
mod moderation;
mod plans;
mod premium;
pub mod privacy;
mod promos;
mod resharding;
mod rights;
mod row_ref;
mod schedules;
mod scylla;

mod tickets;
mod time;
mod timers;
mod usage;
mod web_sessions;
mod wire;
mod workflows;
mod writer;

pub use accounts::{Account, AccountRepo};
pub use announcements::{
    AnnouncementRepo, CAMPAIGN_MESSAGE_MAX_CHARS, CAMPAIGN_TITLE_MAX_CHARS, Campaign,
    CampaignProgress, Delivery, DeliveryState, DmDelivery, RecipientPage, start_campaign,
    stop_campaign,
};
pub use audit::{AuditEntry, AuditRepo};
pub use automod::{
    AUTOMOD_HIT_RETENTION, AUTOMOD_HIT_WHY_MAX_CHARS, AutomodAction, AutomodConfig, AutomodHit,
    AutomodRepo, AutomodRule, Trigger,
};
pub use backfill::{BACKFILL_PAGE_MAX, BackfillProgress, BackfillTable};
pub use billing::{BillingRepo, PromoCode, Redemption, Subscription, SubscriptionStatus};
pub use cluster::{
    ClusterRepo, LeaderAnnouncement, Lease, NodeRecord, SessionCheckpoint, ShardAssignment,
};
pub use embedded::EmbeddedStore;
pub use error::StorageError;
pub use guild_config::{CONFIG_HISTORY_LEN, GuildConfig, GuildConfigRepo, VersionedConfig};
pub use metered::{Backend, Metered};
pub use moderation::{
    CASE_REASON_MAX_CHARS, Case, EscalationStep, ModerationConfig, ModerationRepo,
};
pub use plans::{Plan, PlanLimits};
pub use premium::{
    AssignRefused, Entitlement, InboxEvent, MAX_SLOTS, PAST_DUE_GRACE, PremiumRepo, PremiumSlot,
    RENEWAL_SLACK, SlotAdded, assign_slot, entitlements, entitlements_of, guild_plan, plan_at,
    refresh_slots, subscription_until,
};
pub use privacy::{
    ExportDocument, FlagChange, PreparedExport, PrivacyFlags, PrivacyRepo, PrivacyRequest,
    RequestKind,
};
pub use promos::{NewPromo, create_promo_code, normalise_code};
pub use resharding::{MAX_SHARDS, ReshardPhase, Resharding, earlier_counts};
pub use rights::{DataRights, StoredRow, UserExport, on_shard, partitions_of, shard_of};
pub use schedules::{
    AnnounceSchedule, MINUTES_A_DAY, Repeat, SCHEDULE_MAX_EVERY_HOURS, SCHEDULE_MESSAGE_MAX_CHARS,
    WEEKDAYS, schedules_over_plan,
};
pub use scylla::{
    ClientCert, MigrationReport, MigrationStep, Replication, ScyllaConfig, ScyllaStore, TlsConfig,
};

pub use tickets::{
    TICKET_REASON_MAX_CHARS, Ticket, TicketPlace, TicketQuery, TicketRepo, TicketsConfig,
    TranscriptAttachment, TranscriptMessage,
};
pub use time::{Retention, Timestamp};
pub use timers::{
    TIMER_ID_MAX_LEN, TIMER_PAYLOAD_MAX_LEN, TIMER_USERS_MAX, Timer, TimerExport, TimerRepo,
};
pub use usage::{UsageCount, UsageRepo};
pub use web_sessions::{WEB_SESSION_MAX_AGE_MS, WebSession, WebSessionExport, WebSessionRepo};
pub use wire::WireError;
pub use workflows::{
    WORKFLOW_RUNS_KEPT, WORKFLOW_TRACE_MAX_BYTES, WORKFLOW_VARIABLE_MAX_BYTES,
    WORKFLOW_VARIABLE_NAME_MAX_CHARS, WORKFLOW_VARIABLES_PER_WRITE, Workflow, WorkflowRepo,
    WorkflowRun, WorkflowVariable,
};
pub use writer::{Ack, AuditWriter, UsageAggregator, WriterConfig, spawn_sweeper};

/// Every repository at once: what a backend implements and the conformance suite checks.
pub trait Store:
    GuildConfigRepo
    + AuditRepo
    + UsageRepo
    + AccountRepo
    + TicketRepo
    + WorkflowRepo
    + BillingRepo
    + PremiumRepo
    + ClusterRepo
    + DataRights
    + WebSessionRepo
    + PrivacyRepo
    + ModerationRepo
    + TimerRepo
    + AutomodRepo
    + AnnouncementRepo
{
}

impl<T> Store for T where
    T: GuildConfigRepo
        + AuditRepo
        + UsageRepo
        + AccountRepo
        + TicketRepo
        + WorkflowRepo
        + BillingRepo
        + PremiumRepo
        + ClusterRepo
        + DataRights
        + WebSessionRepo
        + PrivacyRepo
        + ModerationRepo
        + TimerRepo
        + AutomodRepo
        + AnnouncementRepo
{
}
