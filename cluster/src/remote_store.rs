//! The coordinator's store, used by the nodes of a cluster that has no ScyllaDB: every
//! repository call travels as JSON in one gRPC method, so a shard that moves finds its
//! guilds' data on whichever node it lands. Errors keep their meaning across the trip
//! ([`WireError`]): a node sees the same `Conflict` or `Fenced` a local caller would.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use protonn_storage::{
    Account, AccountRepo, AuditEntry, AuditRepo, BillingRepo, ClusterRepo, DataRights, FlagChange,
    GuildConfig, GuildConfigRepo, InboxEvent, LeaderAnnouncement, Lease, NodeRecord, PremiumRepo,
    PremiumSlot, PreparedExport, PrivacyFlags, PrivacyRepo, PrivacyRequest, PromoCode, Redemption,
    Resharding, SessionCheckpoint, ShardAssignment, SlotAdded, StorageError, Store, StoredRow,
    Subscription, Ticket, TicketQuery, TicketRepo, Timestamp, TranscriptMessage, UsageCount,
    UsageRepo, UserExport, VersionedConfig, WebSession, WebSessionRepo, WireError, Workflow,
    WorkflowRepo, WorkflowRun, WorkflowVariable,
};
use protonn_storage::{
    AnnounceSchedule, AnnouncementRepo, Campaign, Delivery, DmDelivery, RecipientPage,
};
use protonn_storage::{AutomodHit, AutomodRepo, Case, ModerationRepo, Timer, TimerRepo};
use protonn_storage::{BackfillProgress, BackfillTable};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tonic::Status;

use crate::agent::{ClusterMembership, Link};
use crate::grpc::{self, ClusterTls, ClusterToken, Scope, pb};

/// Tries of a call answered `Unavailable` (a standby, or no coordinator reachable): a leader
/// change takes about a lease time-to-live, so 40 × 250 ms covers one.
const STANDBY_RETRIES: u32 = 40;
const STANDBY_PAUSE: Duration = Duration::from_millis(250);

/// One repository call. `rollback` is not here: the trait's default builds it from
/// `history` and `save`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub(crate) enum StoreCall {
    LoadConfig {
        guild_id: u64,
    },
    SaveConfig {
        guild_id: u64,
        expected: u64,
        config: GuildConfig,
    },
    ConfigHistory {
        guild_id: u64,
    },
    AppendAudit {
        entries: Vec<AuditEntry>,
    },
    ListAudit {
        guild_id: u64,
        from: Timestamp,
        to: Timestamp,
        limit: usize,
    },
    AddUsage {
        deltas: Vec<UsageCount>,
    },
    AddUsageFlush {
        flush_id: u64,
        deltas: Vec<UsageCount>,
    },
    Usage {
        guild_id: u64,
        from_day: u32,
        to_day: u32,
    },
    PutAccount {
        account: Account,
    },
    Account {
        user_id: u64,
    },
    TouchAccount {
        user_id: u64,
        at: Timestamp,
    },
    PutTicket {
        ticket: Ticket,
    },
    OpenTicket {
        ticket: Ticket,
        max_open: u32,
    },
    Ticket {
        guild_id: u64,
        ticket_id: u64,
    },
    Tickets {
        guild_id: u64,
    },
    AppendTranscript {
        messages: Vec<TranscriptMessage>,
    },
    ListTickets {
        guild_id: u64,
        query: TicketQuery,
    },
    Transcript {
        guild_id: u64,
        ticket_id: u64,
    },
    TranscriptPage {
        guild_id: u64,
        ticket_id: u64,
        after: u64,
        limit: usize,
    },
    PutWorkflow {
        workflow: Workflow,
    },
    Workflow {
        guild_id: u64,
        workflow_id: u64,
    },
    Workflows {
        guild_id: u64,
    },
    DeleteWorkflow {
        guild_id: u64,
        workflow_id: u64,
    },
    PutWorkflowVariables {
        variables: Vec<WorkflowVariable>,
    },
    WorkflowVariables {
        guild_id: u64,
    },
    PutWorkflowRun {
        run: WorkflowRun,
    },
    WorkflowRuns {
        guild_id: u64,
    },
    PutSubscription {
        subscription: Subscription,
    },
    Subscription {
        subscription_id: u64,
    },
    SubscriptionsOfUser {
        user_id: u64,
    },
    CreatePromo {
        promo: PromoCode,
    },
    Promo {
        code: String,
    },
    RedeemPromo {
        code: String,
        user_id: u64,
        at: Timestamp,
    },
    RedemptionsOfUser {
        user_id: u64,
    },
    Promos {
        limit: usize,
    },
    ReceiveEvent {
        event: InboxEvent,
    },
    PendingEvents {
        limit: usize,
    },
    InboxEvent {
        event_id: String,
    },
    FinishEvent {
        event_id: String,
        outcome: String,
    },
    ApplySubscription {
        subscription: Subscription,
    },
    PutSlot {
        slot: PremiumSlot,
    },
    AddSlot {
        slot: PremiumSlot,
        held: usize,
    },
    RemoveSlot {
        user_id: u64,
        guild_id: u64,
    },
    SlotsOfUser {
        user_id: u64,
    },
    GuildSlot {
        guild_id: u64,
    },
    PutNode {
        node: NodeRecord,
    },
    Nodes,
    RemoveNode {
        node_id: u64,
    },
    ClaimAssignments {
        leader_epoch: u64,
    },
    AssignShard {
        shard_id: u32,
        node_id: u64,
        expected_epoch: u64,
        leader_epoch: u64,
    },
    Assignments,
    SaveCheckpoint {
        checkpoint: SessionCheckpoint,
    },
    SaveCheckpoints {
        checkpoints: Vec<SessionCheckpoint>,
    },
    Checkpoint {
        shard_id: u32,
    },
    AcquireLease {
        name: String,
        holder: u64,
        now: Timestamp,
        ttl_ms: u64,
    },
    RenewLease {
        name: String,
        holder: u64,
        epoch: u64,
        now: Timestamp,
        ttl_ms: u64,
    },
    ReleaseLease {
        name: String,
        holder: u64,
        epoch: u64,
    },
    Lease {
        name: String,
    },
    AnnounceLeader {
        announcement: LeaderAnnouncement,
    },
    LeaderAnnouncement,
    ShardCount,
    FixShardCount {
        count: u32,
    },
    Resharding,
    PutResharding {
        next: Resharding,
    },
    ExportUser {
        user_id: u64,
    },
    DeleteUser {
        user_id: u64,
    },
    DeleteGuild {
        guild_id: u64,
    },
    ScheduleGuildDeletion {
        guild_id: u64,
        at: Timestamp,
    },
    CancelGuildDeletion {
        guild_id: u64,
    },
    ScheduledGuildDeletions,
    StoredGuilds {
        shard_id: u32,
        shard_count: u32,
    },
    SweepExpired {
        now: Timestamp,
    },
    Backfill {
        table: BackfillTable,
        page: usize,
        now: Timestamp,
    },
    DumpRows,
    PutWebSession {
        session: WebSession,
    },
    WebSession {
        id: String,
        now: Timestamp,
    },
    ReplaceWebSession {
        old: WebSession,
        new: WebSession,
    },
    DeleteWebSession {
        id: String,
    },
    WebSessionsOf {
        user_id: u64,
        now: Timestamp,
    },
    DeleteWebSessionsOf {
        user_id: u64,
    },
    SweepWebSessions {
        now: Timestamp,
    },
    PutPrivacyRequest {
        request: PrivacyRequest,
    },
    PrivacyRequestsOf {
        user_id: u64,
    },
    PrivacyRequests {
        from: Timestamp,
        to: Timestamp,
    },
    PrivacyFlags {
        user_id: u64,
    },
    SetPrivacyFlags {
        user_id: u64,
        flags: PrivacyFlags,
    },
    PrivacyFlagChanges {
        since: Timestamp,
    },
    PutExport {
        export: PreparedExport,
    },
    ExportStatus {
        user_id: u64,
        now: Timestamp,
    },
    TakeExport {
        user_id: u64,
        now: Timestamp,
    },
    MarkBrowsersForClearing {
        session_ids: Vec<String>,
        until: Timestamp,
    },
    TakeBrowserClearing {
        session_id: String,
    },
    CreateCase {
        case: Case,
    },
    Case {
        guild_id: u64,
        number: u64,
    },
    CasesAbout {
        guild_id: u64,
        target_id: u64,
        limit: usize,
    },
    Cases {
        guild_id: u64,
        before: Option<u64>,
        limit: usize,
    },
    SetCaseReason {
        guild_id: u64,
        number: u64,
        reason: String,
    },
    PutAutomodHit {
        hit: AutomodHit,
    },
    AutomodHits {
        guild_id: u64,
        before: Option<u64>,
        limit: usize,
    },
    SetAnnounceOptIn {
        shard_id: u32,
        guild_id: u64,
        channel_id: Option<u64>,
    },
    AnnounceOptIns {
        shard_id: u32,
    },
    CreateCampaign {
        campaign: Campaign,
    },
    Campaigns,
    CancelCampaign {
        id: u64,
        at: Timestamp,
    },
    ClaimDelivery {
        delivery: Delivery,
        replacing: Option<String>,
    },
    FinishDelivery {
        delivery: Delivery,
    },
    Deliveries {
        campaign_id: u64,
        shard_id: Option<u32>,
    },
    DmRecipients {
        after: Option<u64>,
        limit: usize,
    },
    ClaimDmDelivery {
        delivery: DmDelivery,
        replacing: Option<String>,
    },
    FinishDmDelivery {
        delivery: DmDelivery,
    },
    DmDeliveries {
        campaign_id: u64,
        shard_id: Option<u32>,
    },
    PutAnnounceSchedule {
        schedule: AnnounceSchedule,
    },
    AnnounceSchedules {
        guild_id: u64,
    },
    DeleteAnnounceSchedule {
        guild_id: u64,
        schedule_id: u64,
    },
    PutTimer {
        timer: Timer,
    },
    CancelTimer {
        guild_id: u64,
        id: String,
    },
    TimersOfGuild {
        guild_id: u64,
    },
    DueTimers {
        shard_id: u32,
        now: Timestamp,
        limit: usize,
    },
    ClaimTimer {
        timer: Timer,
        claimant: String,
        now: Timestamp,
        until: Timestamp,
    },
    CompleteTimer {
        guild_id: u64,
        id: String,
        claimant: String,
    },
}

impl StoreCall {
    /// Calls node credentials may not make: the leadership lease, the cluster tables only
    /// the leader writes (membership, assignment, the shard count), and reading or erasing
    /// the store in bulk. A node's guild actors need none of them. `SaveCheckpoints` is a
    /// node's: owners store their shards' resume points, and the store ignores a point
    /// whose epoch is older than the shard's assignment.
    fn operator_only(&self) -> bool {
        matches!(
            self,
            Self::AcquireLease { .. }
                | Self::RenewLease { .. }
                | Self::ReleaseLease { .. }
                | Self::Lease { .. }
                | Self::AnnounceLeader { .. }
                | Self::LeaderAnnouncement
                | Self::PutNode { .. }
                | Self::RemoveNode { .. }
                | Self::ClaimAssignments { .. }
                | Self::AssignShard { .. }
                | Self::SaveCheckpoint { .. }
                | Self::FixShardCount { .. }
                | Self::PutResharding { .. }
                | Self::ExportUser { .. }
                | Self::DeleteUser { .. }
                | Self::DeleteGuild { .. }
                | Self::SweepExpired { .. }
                | Self::Backfill { .. }
                | Self::DumpRows
                | Self::PrivacyRequests { .. }
                | Self::PutExport { .. }
                | Self::MarkBrowsersForClearing { .. }
        )
    }

    /// Calls only the dashboard makes: its sessions, Paddle's webhook inbox, promo codes
    /// and operators' campaigns (from the admin page). Node credentials may not: a stolen
    /// node token must not mint sessions, bill or message every guild.
    fn dashboard_only(&self) -> bool {
        matches!(
            self,
            Self::PutWebSession { .. }
                | Self::WebSession { .. }
                | Self::ReplaceWebSession { .. }
                | Self::DeleteWebSession { .. }
                | Self::WebSessionsOf { .. }
                | Self::DeleteWebSessionsOf { .. }
                | Self::SweepWebSessions { .. }
                | Self::TakeBrowserClearing { .. }
                | Self::TakeExport { .. }
                | Self::ReceiveEvent { .. }
                | Self::PendingEvents { .. }
                | Self::FinishEvent { .. }
                | Self::CreatePromo { .. }
                | Self::RedeemPromo { .. }
                | Self::CreateCampaign { .. }
                | Self::CancelCampaign { .. }
        )
    }

    /// Calls only the bot makes: resume points, durable timers, deliveries of campaigns (and
    /// the users who consented to them by DM) and usage counts. The dashboard's credentials
    /// may not.
    fn bot_only(&self) -> bool {
        matches!(
            self,
            Self::SaveCheckpoints { .. }
                | Self::Checkpoint { .. }
                | Self::PutTimer { .. }
                | Self::CancelTimer { .. }
                | Self::DueTimers { .. }
                | Self::ClaimTimer { .. }
                | Self::CompleteTimer { .. }
                | Self::ClaimDelivery { .. }
                | Self::FinishDelivery { .. }
                | Self::DmRecipients { .. }
                | Self::ClaimDmDelivery { .. }
                | Self::FinishDmDelivery { .. }
                | Self::AddUsage { .. }
                | Self::AddUsageFlush { .. }
        )
    }

    /// Whether credentials of `scope` may make this call: `PermissionDenied` naming the
    /// credentials it needs when not.
    pub(crate) fn permitted(&self, scope: Scope) -> Result<(), Status> {
        if self.operator_only() {
            scope.require_operator("this store call (the lease, cluster tables, raw rows)")
        } else if self.dashboard_only() {
            scope.require_dashboard("this store call (sessions, billing, campaigns)")
        } else if self.bot_only() {
            scope.require_node("this store call (resume points, timers, deliveries, usage)")
        } else {
            Ok(())
        }
    }

    /// Calls that change nothing, safe to repeat after a connection broke mid-call.
    fn is_read(&self) -> bool {
        matches!(
            self,
            Self::LoadConfig { .. }
                | Self::ConfigHistory { .. }
                | Self::ListAudit { .. }
                | Self::Usage { .. }
                | Self::Account { .. }
                | Self::Ticket { .. }
                | Self::Tickets { .. }
                | Self::ListTickets { .. }
                | Self::Transcript { .. }
                | Self::TranscriptPage { .. }
                | Self::Workflow { .. }
                | Self::Workflows { .. }
                | Self::WorkflowVariables { .. }
                | Self::WorkflowRuns { .. }
                | Self::Subscription { .. }
                | Self::SubscriptionsOfUser { .. }
                | Self::Promo { .. }
                | Self::RedemptionsOfUser { .. }
                | Self::Promos { .. }
                | Self::PendingEvents { .. }
                | Self::InboxEvent { .. }
                | Self::SlotsOfUser { .. }
                | Self::GuildSlot { .. }
                | Self::Nodes
                | Self::Assignments
                | Self::Checkpoint { .. }
                | Self::Lease { .. }
                | Self::ShardCount
                | Self::Resharding
                | Self::ExportUser { .. }
                | Self::ScheduledGuildDeletions
                | Self::StoredGuilds { .. }
                | Self::DumpRows
                | Self::WebSession { .. }
                | Self::WebSessionsOf { .. }
                | Self::PrivacyRequestsOf { .. }
                | Self::PrivacyRequests { .. }
                | Self::PrivacyFlags { .. }
                | Self::PrivacyFlagChanges { .. }
                | Self::ExportStatus { .. }
                | Self::Case { .. }
                | Self::CasesAbout { .. }
                | Self::Cases { .. }
                | Self::AutomodHits { .. }
                | Self::AnnounceOptIns { .. }
                | Self::Campaigns
                | Self::Deliveries { .. }
                | Self::DmRecipients { .. }
                | Self::DmDeliveries { .. }
                | Self::AnnounceSchedules { .. }
                | Self::TimersOfGuild { .. }
                | Self::DueTimers { .. }
        )
    }
}

/// Runs `call` on the coordinator's `store`; the answer is the method's result as JSON.
pub(crate) async fn serve(
    store: &dyn Store,
    call: StoreCall,
) -> Result<serde_json::Value, WireError> {
    use StoreCall as C;
    let ms = Duration::from_millis;
    let answer = async {
        Ok::<_, StorageError>(match call {
            C::LoadConfig { guild_id } => json(store.load(guild_id).await?),
            C::SaveConfig {
                guild_id,
                expected,
                config,
            } => json(store.save(guild_id, expected, &config).await?),
            C::ConfigHistory { guild_id } => json(store.history(guild_id).await?),
            C::AppendAudit { entries } => json(store.append_audit(&entries).await?),
            C::ListAudit {
                guild_id,
                from,
                to,
                limit,
            } => json(store.list_audit(guild_id, from, to, limit).await?),
            C::AddUsage { deltas } => json(store.add_usage(&deltas).await?),
            C::AddUsageFlush { flush_id, deltas } => {
                json(store.add_usage_flush(flush_id, &deltas).await?)
            }
            C::Usage {
                guild_id,
                from_day,
                to_day,
            } => json(store.usage(guild_id, from_day, to_day).await?),
            C::PutAccount { account } => json(store.put_account(&account).await?),
            C::Account { user_id } => json(store.account(user_id).await?),
            C::TouchAccount { user_id, at } => json(store.touch_account(user_id, at).await?),
            C::PutTicket { ticket } => json(store.put_ticket(&ticket).await?),
            C::OpenTicket { ticket, max_open } => json(store.open_ticket(&ticket, max_open).await?),
            C::Ticket {
                guild_id,
                ticket_id,
            } => json(store.ticket(guild_id, ticket_id).await?),
            C::Tickets { guild_id } => json(store.tickets(guild_id).await?),
            C::AppendTranscript { messages } => json(store.append_transcript(&messages).await?),
            C::Transcript {
                guild_id,
                ticket_id,
            } => json(store.transcript(guild_id, ticket_id).await?),
            C::ListTickets { guild_id, query } => json(store.list_tickets(guild_id, &query).await?),
            C::TranscriptPage {
                guild_id,
                ticket_id,
                after,
                limit,
            } => json(
                store
                    .transcript_page(guild_id, ticket_id, after, limit)
                    .await?,
            ),
            C::PutWorkflow { workflow } => json(store.put_workflow(&workflow).await?),
            C::Workflow {
                guild_id,
                workflow_id,
            } => json(store.workflow(guild_id, workflow_id).await?),
            C::Workflows { guild_id } => json(store.workflows(guild_id).await?),
            C::DeleteWorkflow {
                guild_id,
                workflow_id,
            } => json(store.delete_workflow(guild_id, workflow_id).await?),
            C::PutWorkflowVariables { variables } => {
                json(store.put_workflow_variables(&variables).await?)
            }
            C::WorkflowVariables { guild_id } => json(store.workflow_variables(guild_id).await?),
            C::PutWorkflowRun { run } => json(store.put_workflow_run(&run).await?),
            C::WorkflowRuns { guild_id } => json(store.workflow_runs(guild_id).await?),
            C::PutSubscription { subscription } => {
                json(store.put_subscription(&subscription).await?)
            }
            C::Subscription { subscription_id } => json(store.subscription(subscription_id).await?),
            C::SubscriptionsOfUser { user_id } => json(store.subscriptions_of_user(user_id).await?),
            C::CreatePromo { promo } => json(store.create_promo(&promo).await?),
            C::Promo { code } => json(store.promo(&code).await?),
            C::RedeemPromo { code, user_id, at } => {
                json(store.redeem_promo(&code, user_id, at).await?)
            }
            C::RedemptionsOfUser { user_id } => json(store.redemptions_of_user(user_id).await?),
            C::Promos { limit } => json(store.promos(limit).await?),
            C::ReceiveEvent { event } => json(store.receive_event(&event).await?),
            C::PendingEvents { limit } => json(store.pending_events(limit).await?),
            C::InboxEvent { event_id } => json(store.inbox_event(&event_id).await?),
            C::FinishEvent { event_id, outcome } => {
                json(store.finish_event(&event_id, &outcome).await?)
            }
            C::ApplySubscription { subscription } => {
                json(store.apply_subscription(&subscription).await?)
            }
            C::PutSlot { slot } => json(store.put_slot(&slot).await?),
            C::AddSlot { slot, held } => json(store.add_slot(&slot, held).await?),
            C::RemoveSlot { user_id, guild_id } => {
                json(store.remove_slot(user_id, guild_id).await?)
            }
            C::SlotsOfUser { user_id } => json(store.slots_of_user(user_id).await?),
            C::GuildSlot { guild_id } => json(store.guild_slot(guild_id).await?),
            C::PutNode { node } => json(store.put_node(&node).await?),
            C::Nodes => json(store.nodes().await?),
            C::RemoveNode { node_id } => json(store.remove_node(node_id).await?),
            C::ClaimAssignments { leader_epoch } => {
                json(store.claim_assignments(leader_epoch).await?)
            }
            C::AssignShard {
                shard_id,
                node_id,
                expected_epoch,
                leader_epoch,
            } => json(
                store
                    .assign_shard(shard_id, node_id, expected_epoch, leader_epoch)
                    .await?,
            ),
            C::Assignments => json(store.assignments().await?),
            C::SaveCheckpoint { checkpoint } => json(store.save_checkpoint(&checkpoint).await?),
            C::SaveCheckpoints { checkpoints } => json(store.save_checkpoints(&checkpoints).await?),
            C::Checkpoint { shard_id } => json(store.checkpoint(shard_id).await?),
            C::AcquireLease {
                name,
                holder,
                now,
                ttl_ms,
            } => json(store.acquire_lease(&name, holder, now, ms(ttl_ms)).await?),
            C::RenewLease {
                name,
                holder,
                epoch,
                now,
                ttl_ms,
            } => json(
                store
                    .renew_lease(&name, holder, epoch, now, ms(ttl_ms))
                    .await?,
            ),
            C::ReleaseLease {
                name,
                holder,
                epoch,
            } => json(store.release_lease(&name, holder, epoch).await?),
            C::Lease { name } => json(store.lease(&name).await?),
            C::AnnounceLeader { announcement } => json(store.announce_leader(&announcement).await?),
            C::LeaderAnnouncement => json(store.leader_announcement().await?),
            C::ShardCount => json(store.shard_count().await?),
            C::FixShardCount { count } => json(store.fix_shard_count(count).await?),
            C::Resharding => json(store.resharding().await?),
            C::PutResharding { next } => json(store.put_resharding(&next).await?),
            C::ExportUser { user_id } => json(store.export_user(user_id).await?),
            C::DeleteUser { user_id } => json(store.delete_user(user_id).await?),
            C::DeleteGuild { guild_id } => json(store.delete_guild(guild_id).await?),
            C::ScheduleGuildDeletion { guild_id, at } => {
                json(store.schedule_guild_deletion(guild_id, at).await?)
            }
            C::CancelGuildDeletion { guild_id } => {
                json(store.cancel_guild_deletion(guild_id).await?)
            }
            C::ScheduledGuildDeletions => json(store.scheduled_guild_deletions().await?),
            C::StoredGuilds {
                shard_id,
                shard_count,
            } => json(store.stored_guilds(shard_id, shard_count).await?),
            C::SweepExpired { now } => json(store.sweep_expired(now).await?),
            C::Backfill { table, page, now } => json(store.backfill(table, page, now).await?),
            C::DumpRows => json(store.dump_rows().await?),
            C::PutWebSession { session } => json(store.put_web_session(&session).await?),
            C::WebSession { id, now } => json(store.web_session(&id, now).await?),
            C::ReplaceWebSession { old, new } => json(store.replace_web_session(&old, &new).await?),
            C::DeleteWebSession { id } => json(store.delete_web_session(&id).await?),
            C::WebSessionsOf { user_id, now } => json(store.web_sessions_of(user_id, now).await?),
            C::DeleteWebSessionsOf { user_id } => {
                json(store.delete_web_sessions_of(user_id).await?)
            }
            C::SweepWebSessions { now } => json(store.sweep_web_sessions(now).await?),
            C::PutPrivacyRequest { request } => json(store.put_privacy_request(&request).await?),
            C::PrivacyRequestsOf { user_id } => json(store.privacy_requests_of(user_id).await?),
            C::PrivacyRequests { from, to } => json(store.privacy_requests(from, to).await?),
            C::PrivacyFlags { user_id } => json(store.privacy_flags(user_id).await?),
            C::SetPrivacyFlags { user_id, flags } => {
                json(store.set_privacy_flags(user_id, &flags).await?)
            }
            C::PrivacyFlagChanges { since } => json(store.privacy_flag_changes(since).await?),
            C::PutExport { export } => json(store.put_export(&export).await?),
            C::ExportStatus { user_id, now } => json(store.export_status(user_id, now).await?),
            C::TakeExport { user_id, now } => json(store.take_export(user_id, now).await?),
            C::MarkBrowsersForClearing { session_ids, until } => json(
                store
                    .mark_browsers_for_clearing(&session_ids, until)
                    .await?,
            ),
            C::TakeBrowserClearing { session_id } => {
                json(store.take_browser_clearing(&session_id).await?)
            }
            C::CreateCase { case } => json(store.create_case(&case).await?),
            C::Case { guild_id, number } => json(store.case(guild_id, number).await?),
            C::CasesAbout {
                guild_id,
                target_id,
                limit,
            } => json(store.cases_about(guild_id, target_id, limit).await?),
            C::Cases {
                guild_id,
                before,
                limit,
            } => json(store.cases(guild_id, before, limit).await?),
            C::SetCaseReason {
                guild_id,
                number,
                reason,
            } => json(store.set_case_reason(guild_id, number, &reason).await?),
            C::PutAutomodHit { hit } => json(store.put_automod_hit(&hit).await?),
            C::AutomodHits {
                guild_id,
                before,
                limit,
            } => json(store.automod_hits(guild_id, before, limit).await?),
            C::SetAnnounceOptIn {
                shard_id,
                guild_id,
                channel_id,
            } => json(
                store
                    .set_announce_opt_in(shard_id, guild_id, channel_id)
                    .await?,
            ),
            C::AnnounceOptIns { shard_id } => json(store.announce_opt_ins(shard_id).await?),
            C::CreateCampaign { campaign } => json(store.create_campaign(&campaign).await?),
            C::Campaigns => json(store.campaigns().await?),
            C::CancelCampaign { id, at } => json(store.cancel_campaign(id, at).await?),
            C::ClaimDelivery {
                delivery,
                replacing,
            } => json(
                store
                    .claim_delivery(&delivery, replacing.as_deref())
                    .await?,
            ),
            C::FinishDelivery { delivery } => json(store.finish_delivery(&delivery).await?),
            C::Deliveries {
                campaign_id,
                shard_id,
            } => json(store.deliveries(campaign_id, shard_id).await?),
            C::DmRecipients { after, limit } => json(store.dm_recipients(after, limit).await?),
            C::ClaimDmDelivery {
                delivery,
                replacing,
            } => json(
                store
                    .claim_dm_delivery(&delivery, replacing.as_deref())
                    .await?,
            ),
            C::FinishDmDelivery { delivery } => json(store.finish_dm_delivery(&delivery).await?),
            C::DmDeliveries {
                campaign_id,
                shard_id,
            } => json(store.dm_deliveries(campaign_id, shard_id).await?),
            C::PutAnnounceSchedule { schedule } => {
                json(store.put_announce_schedule(&schedule).await?)
            }
            C::AnnounceSchedules { guild_id } => json(store.announce_schedules(guild_id).await?),
            C::DeleteAnnounceSchedule {
                guild_id,
                schedule_id,
            } => json(
                store
                    .delete_announce_schedule(guild_id, schedule_id)
                    .await?,
            ),
            C::PutTimer { timer } => json(store.put_timer(&timer).await?),
            C::CancelTimer { guild_id, id } => json(store.cancel_timer(guild_id, &id).await?),
            C::TimersOfGuild { guild_id } => json(store.timers_of_guild(guild_id).await?),
            C::DueTimers {
                shard_id,
                now,
                limit,
            } => json(store.due_timers(shard_id, now, limit).await?),
            C::ClaimTimer {
                timer,
                claimant,
                now,
                until,
            } => json(store.claim_timer(&timer, &claimant, now, until).await?),
            C::CompleteTimer {
                guild_id,
                id,
                claimant,
            } => json(store.complete_timer(guild_id, &id, &claimant).await?),
        })
    };
    answer.await.map_err(|err| WireError::from(&err))
}

fn json(value: impl Serialize) -> serde_json::Value {
    serde_json::to_value(value).expect("repository results serialise to JSON")
}

/// The repositories of the leading coordinator, for a node or any other client of the
/// cluster (the dashboard, tests).
#[derive(Clone)]
pub struct RemoteStore {
    link: Arc<Link>,
}

impl RemoteStore {
    pub(crate) fn new(link: Arc<Link>) -> Self {
        Self { link }
    }

    /// Uses whichever of `coordinators` leads.
    pub fn connect(
        coordinators: Vec<String>,
        token: ClusterToken,
        tls: Option<ClusterTls>,
    ) -> Self {
        Self::new(Link::new(ClusterMembership {
            coordinators,
            token,
            web_token: None,
            tls,
            name: String::new(),
            // A store client serves no guild calls.
            guild_listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            guild_advertise: None,
            // A store client never drains.
            drain_timeout: Duration::from_secs(60),
        }))
    }

    async fn call<T: DeserializeOwned>(&self, call: StoreCall) -> Result<T, StorageError> {
        let request = pb::StoreCall {
            call: serde_json::to_vec(&call).expect("store calls serialise to JSON"),
        };
        let unavailable = |attempts: u32, message: String| StorageError::Unavailable {
            kind: "remote",
            attempts,
            message,
        };
        let read = call.is_read();
        let mut tries = 0;
        // A standby's hint is followed at once, but not twice in a row: during a failover
        // two stale hints (a dead leader's address) would otherwise spend every try at once.
        let mut followed_last = false;
        let answer = loop {
            tries += 1;
            let answered = match self.link.storage_client().await {
                Ok(mut client) => {
                    client
                        .call(grpc::with_deadline(request.clone(), grpc::CALL_DEADLINE))
                        .await
                }
                Err(err) => Err(tonic::Status::unavailable(err)),
            };
            let status = match answered {
                Ok(answer) => break answer.into_inner().answer,
                Err(status) => status,
            };
            let followed = self.link.next_coordinator(Some(&status));
            // Unavailable: a standby refused it or no leader was reachable, so it was not
            // applied. Unknown: the connection broke mid-call, so a write may have been
            // applied; only a read is safe to repeat.
            let retry = match status.code() {
                tonic::Code::Unavailable => true,
                tonic::Code::Unknown => read,
                _ => false,
            };
            if !retry || tries >= STANDBY_RETRIES {
                return Err(unavailable(tries, status.to_string()));
            }
            if !followed || followed_last {
                tokio::time::sleep(STANDBY_PAUSE).await;
            }
            followed_last = followed;
        };
        let answer: Result<serde_json::Value, WireError> = serde_json::from_slice(&answer)
            .map_err(|err| unavailable(tries, format!("unreadable answer: {err}")))?;
        let value = answer.map_err(StorageError::from)?;
        serde_json::from_value(value)
            .map_err(|err| unavailable(tries, format!("unexpected answer: {err}")))
    }
}

#[async_trait]
impl GuildConfigRepo for RemoteStore {
    async fn load(&self, guild_id: u64) -> Result<Option<VersionedConfig>, StorageError> {
        self.call(StoreCall::LoadConfig { guild_id }).await
    }
    async fn save(
        &self,
        guild_id: u64,
        expected: u64,
        config: &GuildConfig,
    ) -> Result<u64, StorageError> {
        self.call(StoreCall::SaveConfig {
            guild_id,
            expected,
            config: config.clone(),
        })
        .await
    }
    async fn history(&self, guild_id: u64) -> Result<Vec<VersionedConfig>, StorageError> {
        self.call(StoreCall::ConfigHistory { guild_id }).await
    }
}

#[async_trait]
impl AuditRepo for RemoteStore {
    async fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StorageError> {
        self.call(StoreCall::AppendAudit {
            entries: entries.to_vec(),
        })
        .await
    }
    async fn list_audit(
        &self,
        guild_id: u64,
        from: Timestamp,
        to: Timestamp,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StorageError> {
        self.call(StoreCall::ListAudit {
            guild_id,
            from,
            to,
            limit,
        })
        .await
    }
}

#[async_trait]
impl UsageRepo for RemoteStore {
    async fn add_usage(&self, deltas: &[UsageCount]) -> Result<(), StorageError> {
        self.call(StoreCall::AddUsage {
            deltas: deltas.to_vec(),
        })
        .await
    }

    async fn add_usage_flush(
        &self,
        flush_id: u64,
        deltas: &[UsageCount],
    ) -> Result<(), StorageError> {
        self.call(StoreCall::AddUsageFlush {
            flush_id,
            deltas: deltas.to_vec(),
        })
        .await
    }
    async fn usage(
        &self,
        guild_id: u64,
        from_day: u32,
        to_day: u32,
    ) -> Result<Vec<UsageCount>, StorageError> {
        self.call(StoreCall::Usage {
            guild_id,
            from_day,
            to_day,
        })
        .await
    }
}

#[async_trait]
impl AccountRepo for RemoteStore {
    async fn put_account(&self, account: &Account) -> Result<(), StorageError> {
        self.call(StoreCall::PutAccount {
            account: account.clone(),
        })
        .await
    }
    async fn account(&self, user_id: u64) -> Result<Option<Account>, StorageError> {
        self.call(StoreCall::Account { user_id }).await
    }
    async fn touch_account(&self, user_id: u64, at: Timestamp) -> Result<(), StorageError> {
        self.call(StoreCall::TouchAccount { user_id, at }).await
    }
}

#[async_trait]
impl TicketRepo for RemoteStore {
    async fn put_ticket(&self, ticket: &Ticket) -> Result<(), StorageError> {
        self.call(StoreCall::PutTicket {
            ticket: ticket.clone(),
        })
        .await
    }
    async fn open_ticket(
        &self,
        ticket: &Ticket,
        max_open: u32,
    ) -> Result<Option<u64>, StorageError> {
        self.call(StoreCall::OpenTicket {
            ticket: ticket.clone(),
            max_open,
        })
        .await
    }
    async fn ticket(&self, guild_id: u64, ticket_id: u64) -> Result<Option<Ticket>, StorageError> {
        self.call(StoreCall::Ticket {
            guild_id,
            ticket_id,
        })
        .await
    }
    async fn tickets(&self, guild_id: u64) -> Result<Vec<Ticket>, StorageError> {
        self.call(StoreCall::Tickets { guild_id }).await
    }
    async fn append_transcript(&self, messages: &[TranscriptMessage]) -> Result<(), StorageError> {
        self.call(StoreCall::AppendTranscript {
            messages: messages.to_vec(),
        })
        .await
    }
    async fn transcript(
        &self,
        guild_id: u64,
        ticket_id: u64,
    ) -> Result<Vec<TranscriptMessage>, StorageError> {
        self.call(StoreCall::Transcript {
            guild_id,
            ticket_id,
        })
        .await
    }
    async fn list_tickets(
        &self,
        guild_id: u64,
        query: &TicketQuery,
    ) -> Result<Vec<Ticket>, StorageError> {
        self.call(StoreCall::ListTickets {
            guild_id,
            query: query.clone(),
        })
        .await
    }
    async fn transcript_page(
        &self,
        guild_id: u64,
        ticket_id: u64,
        after: u64,
        limit: usize,
    ) -> Result<Vec<TranscriptMessage>, StorageError> {
        self.call(StoreCall::TranscriptPage {
            guild_id,
            ticket_id,
            after,
            limit,
        })
        .await
    }
}

#[async_trait]
impl WorkflowRepo for RemoteStore {
    async fn put_workflow(&self, workflow: &Workflow) -> Result<(), StorageError> {
        self.call(StoreCall::PutWorkflow {
            workflow: workflow.clone(),
        })
        .await
    }
    async fn workflow(
        &self,
        guild_id: u64,
        workflow_id: u64,
    ) -> Result<Option<Workflow>, StorageError> {
        self.call(StoreCall::Workflow {
            guild_id,
            workflow_id,
        })
        .await
    }
    async fn workflows(&self, guild_id: u64) -> Result<Vec<Workflow>, StorageError> {
        self.call(StoreCall::Workflows { guild_id }).await
    }
    async fn delete_workflow(&self, guild_id: u64, workflow_id: u64) -> Result<bool, StorageError> {
        self.call(StoreCall::DeleteWorkflow {
            guild_id,
            workflow_id,
        })
        .await
    }
    async fn put_workflow_variables(
        &self,
        variables: &[WorkflowVariable],
    ) -> Result<(), StorageError> {
        self.call(StoreCall::PutWorkflowVariables {
            variables: variables.to_vec(),
        })
        .await
    }
    async fn workflow_variables(
        &self,
        guild_id: u64,
    ) -> Result<Vec<WorkflowVariable>, StorageError> {
        self.call(StoreCall::WorkflowVariables { guild_id }).await
    }
    async fn put_workflow_run(&self, run: &WorkflowRun) -> Result<(), StorageError> {
        self.call(StoreCall::PutWorkflowRun { run: run.clone() })
            .await
    }
    async fn workflow_runs(&self, guild_id: u64) -> Result<Vec<WorkflowRun>, StorageError> {
        self.call(StoreCall::WorkflowRuns { guild_id }).await
    }
}

#[async_trait]
impl BillingRepo for RemoteStore {
    async fn put_subscription(&self, subscription: &Subscription) -> Result<(), StorageError> {
        self.call(StoreCall::PutSubscription {
            subscription: subscription.clone(),
        })
        .await
    }
    async fn subscription(
        &self,
        subscription_id: u64,
    ) -> Result<Option<Subscription>, StorageError> {
        self.call(StoreCall::Subscription { subscription_id }).await
    }
    async fn subscriptions_of_user(&self, user_id: u64) -> Result<Vec<Subscription>, StorageError> {
        self.call(StoreCall::SubscriptionsOfUser { user_id }).await
    }
    async fn create_promo(&self, promo: &PromoCode) -> Result<(), StorageError> {
        self.call(StoreCall::CreatePromo {
            promo: promo.clone(),
        })
        .await
    }
    async fn promo(&self, code: &str) -> Result<Option<(PromoCode, u32)>, StorageError> {
        self.call(StoreCall::Promo {
            code: code.to_owned(),
        })
        .await
    }
    async fn promos(&self, limit: usize) -> Result<Vec<(PromoCode, u32)>, StorageError> {
        self.call(StoreCall::Promos { limit }).await
    }
    async fn redeem_promo(
        &self,
        code: &str,
        user_id: u64,
        at: Timestamp,
    ) -> Result<u32, StorageError> {
        self.call(StoreCall::RedeemPromo {
            code: code.to_owned(),
            user_id,
            at,
        })
        .await
    }
    async fn redemptions_of_user(&self, user_id: u64) -> Result<Vec<Redemption>, StorageError> {
        self.call(StoreCall::RedemptionsOfUser { user_id }).await
    }
}

#[async_trait]
impl PremiumRepo for RemoteStore {
    async fn receive_event(&self, event: &InboxEvent) -> Result<bool, StorageError> {
        self.call(StoreCall::ReceiveEvent {
            event: event.clone(),
        })
        .await
    }
    async fn pending_events(&self, limit: usize) -> Result<Vec<InboxEvent>, StorageError> {
        self.call(StoreCall::PendingEvents { limit }).await
    }
    async fn inbox_event(&self, event_id: &str) -> Result<Option<InboxEvent>, StorageError> {
        self.call(StoreCall::InboxEvent {
            event_id: event_id.to_owned(),
        })
        .await
    }
    async fn finish_event(&self, event_id: &str, outcome: &str) -> Result<(), StorageError> {
        self.call(StoreCall::FinishEvent {
            event_id: event_id.to_owned(),
            outcome: outcome.to_owned(),
        })
        .await
    }
    async fn apply_subscription(&self, subscription: &Subscription) -> Result<bool, StorageError> {
        self.call(StoreCall::ApplySubscription {
            subscription: subscription.clone(),
        })
        .await
    }
    async fn put_slot(&self, slot: &PremiumSlot) -> Result<(), StorageError> {
        self.call(StoreCall::PutSlot { slot: slot.clone() }).await
    }
    async fn add_slot(&self, slot: &PremiumSlot, held: usize) -> Result<SlotAdded, StorageError> {
        self.call(StoreCall::AddSlot {
            slot: slot.clone(),
            held,
        })
        .await
    }
    async fn remove_slot(&self, user_id: u64, guild_id: u64) -> Result<bool, StorageError> {
        self.call(StoreCall::RemoveSlot { user_id, guild_id }).await
    }
    async fn slots_of_user(&self, user_id: u64) -> Result<Vec<PremiumSlot>, StorageError> {
        self.call(StoreCall::SlotsOfUser { user_id }).await
    }
    async fn guild_slot(&self, guild_id: u64) -> Result<Option<PremiumSlot>, StorageError> {
        self.call(StoreCall::GuildSlot { guild_id }).await
    }
}

#[async_trait]
impl ClusterRepo for RemoteStore {
    async fn put_node(&self, node: &NodeRecord) -> Result<(), StorageError> {
        self.call(StoreCall::PutNode { node: node.clone() }).await
    }
    async fn nodes(&self) -> Result<Vec<NodeRecord>, StorageError> {
        self.call(StoreCall::Nodes).await
    }
    async fn remove_node(&self, node_id: u64) -> Result<(), StorageError> {
        self.call(StoreCall::RemoveNode { node_id }).await
    }
    async fn assign_shard(
        &self,
        shard_id: u32,
        node_id: u64,
        expected_epoch: u64,
        leader_epoch: u64,
    ) -> Result<ShardAssignment, StorageError> {
        self.call(StoreCall::AssignShard {
            shard_id,
            node_id,
            expected_epoch,
            leader_epoch,
        })
        .await
    }
    async fn claim_assignments(&self, leader_epoch: u64) -> Result<(), StorageError> {
        self.call(StoreCall::ClaimAssignments { leader_epoch })
            .await
    }
    async fn assignments(&self) -> Result<Vec<ShardAssignment>, StorageError> {
        self.call(StoreCall::Assignments).await
    }
    async fn save_checkpoint(&self, checkpoint: &SessionCheckpoint) -> Result<(), StorageError> {
        self.call(StoreCall::SaveCheckpoint {
            checkpoint: checkpoint.clone(),
        })
        .await
    }
    /// One call for the batch, so a node's checkpoints cost one round trip and one commit.
    async fn save_checkpoints(
        &self,
        checkpoints: &[SessionCheckpoint],
    ) -> Result<Vec<u32>, StorageError> {
        self.call(StoreCall::SaveCheckpoints {
            checkpoints: checkpoints.to_vec(),
        })
        .await
    }
    async fn checkpoint(&self, shard_id: u32) -> Result<Option<SessionCheckpoint>, StorageError> {
        self.call(StoreCall::Checkpoint { shard_id }).await
    }
    async fn acquire_lease(
        &self,
        name: &str,
        holder: u64,
        now: Timestamp,
        ttl: Duration,
    ) -> Result<Lease, StorageError> {
        let ttl_ms = ttl.as_millis() as u64;
        self.call(StoreCall::AcquireLease {
            name: name.to_owned(),
            holder,
            now,
            ttl_ms,
        })
        .await
    }
    async fn renew_lease(
        &self,
        name: &str,
        holder: u64,
        epoch: u64,
        now: Timestamp,
        ttl: Duration,
    ) -> Result<Lease, StorageError> {
        let ttl_ms = ttl.as_millis() as u64;
        self.call(StoreCall::RenewLease {
            name: name.to_owned(),
            holder,
            epoch,
            now,
            ttl_ms,
        })
        .await
    }
    async fn release_lease(&self, name: &str, holder: u64, epoch: u64) -> Result<(), StorageError> {
        self.call(StoreCall::ReleaseLease {
            name: name.to_owned(),
            holder,
            epoch,
        })
        .await
    }
    async fn lease(&self, name: &str) -> Result<Option<Lease>, StorageError> {
        self.call(StoreCall::Lease {
            name: name.to_owned(),
        })
        .await
    }
    async fn announce_leader(&self, announcement: &LeaderAnnouncement) -> Result<(), StorageError> {
        self.call(StoreCall::AnnounceLeader {
            announcement: announcement.clone(),
        })
        .await
    }
    async fn leader_announcement(&self) -> Result<Option<LeaderAnnouncement>, StorageError> {
        self.call(StoreCall::LeaderAnnouncement).await
    }
    async fn shard_count(&self) -> Result<Option<u32>, StorageError> {
        self.call(StoreCall::ShardCount).await
    }
    async fn fix_shard_count(&self, count: u32) -> Result<u32, StorageError> {
        self.call(StoreCall::FixShardCount { count }).await
    }
    async fn resharding(&self) -> Result<Option<Resharding>, StorageError> {
        self.call(StoreCall::Resharding).await
    }
    async fn put_resharding(&self, next: &Resharding) -> Result<Resharding, StorageError> {
        self.call(StoreCall::PutResharding { next: next.clone() })
            .await
    }
}

#[async_trait]
impl DataRights for RemoteStore {
    async fn export_user(&self, user_id: u64) -> Result<UserExport, StorageError> {
        self.call(StoreCall::ExportUser { user_id }).await
    }
    async fn delete_user(&self, user_id: u64) -> Result<u64, StorageError> {
        self.call(StoreCall::DeleteUser { user_id }).await
    }
    async fn delete_guild(&self, guild_id: u64) -> Result<u64, StorageError> {
        self.call(StoreCall::DeleteGuild { guild_id }).await
    }
    async fn schedule_guild_deletion(
        &self,
        guild_id: u64,
        at: Timestamp,
    ) -> Result<(), StorageError> {
        self.call(StoreCall::ScheduleGuildDeletion { guild_id, at })
            .await
    }
    async fn cancel_guild_deletion(&self, guild_id: u64) -> Result<bool, StorageError> {
        self.call(StoreCall::CancelGuildDeletion { guild_id }).await
    }
    async fn scheduled_guild_deletions(&self) -> Result<Vec<(u64, Timestamp)>, StorageError> {
        self.call(StoreCall::ScheduledGuildDeletions).await
    }
    async fn stored_guilds(
        &self,
        shard_id: u32,
        shard_count: u32,
    ) -> Result<Vec<u64>, StorageError> {
        self.call(StoreCall::StoredGuilds {
            shard_id,
            shard_count,
        })
        .await
    }
    async fn sweep_expired(&self, now: Timestamp) -> Result<u64, StorageError> {
        self.call(StoreCall::SweepExpired { now }).await
    }
    async fn backfill(
        &self,
        table: BackfillTable,
        page: usize,
        now: Timestamp,
    ) -> Result<BackfillProgress, StorageError> {
        self.call(StoreCall::Backfill { table, page, now }).await
    }
    async fn dump_rows(&self) -> Result<Vec<StoredRow>, StorageError> {
        self.call(StoreCall::DumpRows).await
    }
}

/// Dashboard sessions in the leader's store, for `protonn web` in a cluster without
/// ScyllaDB. The login state's compare-and-set runs in the leader's store, so two web
/// replicas cannot both spend one state.
#[async_trait]
impl WebSessionRepo for RemoteStore {
    async fn put_web_session(&self, session: &WebSession) -> Result<(), StorageError> {
        self.call(StoreCall::PutWebSession {
            session: session.clone(),
        })
        .await
    }
    async fn web_session(
        &self,
        id: &str,
        now: Timestamp,
    ) -> Result<Option<WebSession>, StorageError> {
        self.call(StoreCall::WebSession {
            id: id.to_owned(),
            now,
        })
        .await
    }
    async fn replace_web_session(
        &self,
        old: &WebSession,
        new: &WebSession,
    ) -> Result<bool, StorageError> {
        self.call(StoreCall::ReplaceWebSession {
            old: old.clone(),
            new: new.clone(),
        })
        .await
    }
    async fn delete_web_session(&self, id: &str) -> Result<(), StorageError> {
        self.call(StoreCall::DeleteWebSession { id: id.to_owned() })
            .await
    }
    async fn web_sessions_of(
        &self,
        user_id: u64,
        now: Timestamp,
    ) -> Result<Vec<WebSession>, StorageError> {
        self.call(StoreCall::WebSessionsOf { user_id, now }).await
    }
    async fn delete_web_sessions_of(&self, user_id: u64) -> Result<u64, StorageError> {
        self.call(StoreCall::DeleteWebSessionsOf { user_id }).await
    }
    async fn sweep_web_sessions(&self, now: Timestamp) -> Result<u64, StorageError> {
        self.call(StoreCall::SweepWebSessions { now }).await
    }
}

/// The privacy centre's tables in the leader's store. What only the store's own process
/// does (preparing exports, listing every request, marking browsers) is operator-only.
#[async_trait]
impl PrivacyRepo for RemoteStore {
    async fn put_privacy_request(&self, request: &PrivacyRequest) -> Result<(), StorageError> {
        self.call(StoreCall::PutPrivacyRequest {
            request: request.clone(),
        })
        .await
    }
    async fn privacy_requests_of(&self, user_id: u64) -> Result<Vec<PrivacyRequest>, StorageError> {
        self.call(StoreCall::PrivacyRequestsOf { user_id }).await
    }
    async fn privacy_requests(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<PrivacyRequest>, StorageError> {
        self.call(StoreCall::PrivacyRequests { from, to }).await
    }
    async fn privacy_flags(&self, user_id: u64) -> Result<PrivacyFlags, StorageError> {
        self.call(StoreCall::PrivacyFlags { user_id }).await
    }
    async fn set_privacy_flags(
        &self,
        user_id: u64,
        flags: &PrivacyFlags,
    ) -> Result<(), StorageError> {
        self.call(StoreCall::SetPrivacyFlags {
            user_id,
            flags: *flags,
        })
        .await
    }
    async fn privacy_flag_changes(
        &self,
        since: Timestamp,
    ) -> Result<Vec<FlagChange>, StorageError> {
        self.call(StoreCall::PrivacyFlagChanges { since }).await
    }
    async fn put_export(&self, export: &PreparedExport) -> Result<(), StorageError> {
        self.call(StoreCall::PutExport {
            export: export.clone(),
        })
        .await
    }
    async fn export_status(
        &self,
        user_id: u64,
        now: Timestamp,
    ) -> Result<Option<(Timestamp, Timestamp)>, StorageError> {
        self.call(StoreCall::ExportStatus { user_id, now }).await
    }
    async fn take_export(
        &self,
        user_id: u64,
        now: Timestamp,
    ) -> Result<Option<PreparedExport>, StorageError> {
        self.call(StoreCall::TakeExport { user_id, now }).await
    }
    async fn mark_browsers_for_clearing(
        &self,
        session_ids: &[String],
        until: Timestamp,
    ) -> Result<(), StorageError> {
        self.call(StoreCall::MarkBrowsersForClearing {
            session_ids: session_ids.to_vec(),
            until,
        })
        .await
    }
    async fn take_browser_clearing(&self, session_id: &str) -> Result<bool, StorageError> {
        self.call(StoreCall::TakeBrowserClearing {
            session_id: session_id.to_owned(),
        })
        .await
    }
}

/// Moderation cases in the leader's store: the case counter's compare-and-set runs there,
/// so two nodes never give one number twice.
#[async_trait]
impl ModerationRepo for RemoteStore {
    async fn create_case(&self, case: &Case) -> Result<u64, StorageError> {
        self.call(StoreCall::CreateCase { case: case.clone() })
            .await
    }
    async fn case(&self, guild_id: u64, number: u64) -> Result<Option<Case>, StorageError> {
        self.call(StoreCall::Case { guild_id, number }).await
    }
    async fn cases_about(
        &self,
        guild_id: u64,
        target_id: u64,
        limit: usize,
    ) -> Result<Vec<Case>, StorageError> {
        self.call(StoreCall::CasesAbout {
            guild_id,
            target_id,
            limit,
        })
        .await
    }
    async fn cases(
        &self,
        guild_id: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Case>, StorageError> {
        self.call(StoreCall::Cases {
            guild_id,
            before,
            limit,
        })
        .await
    }
    async fn set_case_reason(
        &self,
        guild_id: u64,
        number: u64,
        reason: &str,
    ) -> Result<bool, StorageError> {
        self.call(StoreCall::SetCaseReason {
            guild_id,
            number,
            reason: reason.to_owned(),
        })
        .await
    }
}

/// Automod's shadow-mode hits in the leader's store.
#[async_trait]
impl AutomodRepo for RemoteStore {
    async fn put_automod_hit(&self, hit: &AutomodHit) -> Result<(), StorageError> {
        self.call(StoreCall::PutAutomodHit { hit: hit.clone() })
            .await
    }
    async fn automod_hits(
        &self,
        guild_id: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AutomodHit>, StorageError> {
        self.call(StoreCall::AutomodHits {
            guild_id,
            before,
            limit,
        })
        .await
    }
}

/// Announcements in the leader's store: claims are compare-and-set there, so two nodes
/// never both deliver a campaign to a guild. Creating and cancelling are not operator-only:
/// `protonn web` holds node credentials, and its admin page is for operators alone.
#[async_trait]
impl AnnouncementRepo for RemoteStore {
    async fn set_announce_opt_in(
        &self,
        shard_id: u32,
        guild_id: u64,
        channel_id: Option<u64>,
    ) -> Result<(), StorageError> {
        self.call(StoreCall::SetAnnounceOptIn {
            shard_id,
            guild_id,
            channel_id,
        })
        .await
    }
    async fn announce_opt_ins(&self, shard_id: u32) -> Result<Vec<(u64, u64)>, StorageError> {
        self.call(StoreCall::AnnounceOptIns { shard_id }).await
    }
    async fn create_campaign(&self, campaign: &Campaign) -> Result<(), StorageError> {
        self.call(StoreCall::CreateCampaign {
            campaign: campaign.clone(),
        })
        .await
    }
    async fn campaigns(&self) -> Result<Vec<Campaign>, StorageError> {
        self.call(StoreCall::Campaigns).await
    }
    async fn cancel_campaign(&self, id: u64, at: Timestamp) -> Result<Campaign, StorageError> {
        self.call(StoreCall::CancelCampaign { id, at }).await
    }
    async fn claim_delivery(
        &self,
        delivery: &Delivery,
        replacing: Option<&str>,
    ) -> Result<bool, StorageError> {
        self.call(StoreCall::ClaimDelivery {
            delivery: delivery.clone(),
            replacing: replacing.map(str::to_owned),
        })
        .await
    }
    async fn finish_delivery(&self, delivery: &Delivery) -> Result<bool, StorageError> {
        self.call(StoreCall::FinishDelivery {
            delivery: delivery.clone(),
        })
        .await
    }
    async fn deliveries(
        &self,
        campaign_id: u64,
        shard_id: Option<u32>,
    ) -> Result<Vec<Delivery>, StorageError> {
        self.call(StoreCall::Deliveries {
            campaign_id,
            shard_id,
        })
        .await
    }
    async fn dm_recipients(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<RecipientPage, StorageError> {
        self.call(StoreCall::DmRecipients { after, limit }).await
    }
    async fn claim_dm_delivery(
        &self,
        delivery: &DmDelivery,
        replacing: Option<&str>,
    ) -> Result<bool, StorageError> {
        self.call(StoreCall::ClaimDmDelivery {
            delivery: delivery.clone(),
            replacing: replacing.map(str::to_owned),
        })
        .await
    }
    async fn finish_dm_delivery(&self, delivery: &DmDelivery) -> Result<bool, StorageError> {
        self.call(StoreCall::FinishDmDelivery {
            delivery: delivery.clone(),
        })
        .await
    }
    async fn dm_deliveries(
        &self,
        campaign_id: u64,
        shard_id: Option<u32>,
    ) -> Result<Vec<DmDelivery>, StorageError> {
        self.call(StoreCall::DmDeliveries {
            campaign_id,
            shard_id,
        })
        .await
    }
    async fn put_announce_schedule(&self, schedule: &AnnounceSchedule) -> Result<(), StorageError> {
        self.call(StoreCall::PutAnnounceSchedule {
            schedule: schedule.clone(),
        })
        .await
    }
    async fn announce_schedules(
        &self,
        guild_id: u64,
    ) -> Result<Vec<AnnounceSchedule>, StorageError> {
        self.call(StoreCall::AnnounceSchedules { guild_id }).await
    }
    async fn delete_announce_schedule(
        &self,
        guild_id: u64,
        schedule_id: u64,
    ) -> Result<bool, StorageError> {
        self.call(StoreCall::DeleteAnnounceSchedule {
            guild_id,
            schedule_id,
        })
        .await
    }
}

/// Durable timers in the leader's store: claims are compare-and-set there, so the node
/// that gave a shard up and the one that took it never both act on a timer.
#[async_trait]
impl TimerRepo for RemoteStore {
    async fn put_timer(&self, timer: &Timer) -> Result<(), StorageError> {
        self.call(StoreCall::PutTimer {
            timer: timer.clone(),
        })
        .await
    }
    async fn cancel_timer(&self, guild_id: u64, id: &str) -> Result<bool, StorageError> {
        self.call(StoreCall::CancelTimer {
            guild_id,
            id: id.to_owned(),
        })
        .await
    }
    async fn timers_of_guild(&self, guild_id: u64) -> Result<Vec<Timer>, StorageError> {
        self.call(StoreCall::TimersOfGuild { guild_id }).await
    }
    async fn due_timers(
        &self,
        shard_id: u32,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Timer>, StorageError> {
        self.call(StoreCall::DueTimers {
            shard_id,
            now,
            limit,
        })
        .await
    }
    async fn claim_timer(
        &self,
        timer: &Timer,
        claimant: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool, StorageError> {
        self.call(StoreCall::ClaimTimer {
            timer: timer.clone(),
            claimant: claimant.to_owned(),
            now,
            until,
        })
        .await
    }
    async fn complete_timer(
        &self,
        guild_id: u64,
        id: &str,
        claimant: &str,
    ) -> Result<bool, StorageError> {
        self.call(StoreCall::CompleteTimer {
            guild_id,
            id: id.to_owned(),
            claimant: claimant.to_owned(),
        })
        .await
    }
}
