//! [`Metered`]: a store that counts and times every repository call of the store it wraps.
//!
//! One decorator for both backends, so a call is measured the same way on redb and on
//! ScyllaDB, retries inside the backend included. Labels stay bounded: the backend, the
//! repository, the method, and an error kind from a fixed list.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use metrics::{counter, histogram};

use crate::metrics::{ERROR_KINDS, ERRORS, OPERATION_DURATION, OPERATIONS};
use crate::{
    Account, AccountRepo, AuditEntry, AuditRepo, BillingRepo, ClusterRepo, DataRights,
    EmbeddedStore, FlagChange, GuildConfig, GuildConfigRepo, InboxEvent, LeaderAnnouncement, Lease,
    NodeRecord, PremiumRepo, PremiumSlot, PreparedExport, PrivacyFlags, PrivacyRepo,
    PrivacyRequest, PromoCode, Redemption, Resharding, ScyllaStore, SessionCheckpoint,
    ShardAssignment, SlotAdded, StorageError, StoredRow, Subscription, Ticket, TicketQuery,
    TicketRepo, Timestamp, TranscriptMessage, UsageCount, UsageRepo, UserExport, VersionedConfig,
    WebSession, WebSessionRepo, Workflow, WorkflowRepo, WorkflowRun, WorkflowVariable,
};
use crate::{AnnounceSchedule, AnnouncementRepo, Campaign, Delivery, DmDelivery, RecipientPage};
use crate::{AutomodHit, AutomodRepo, Case, ModerationRepo, Timer, TimerRepo};
use crate::{BackfillProgress, BackfillTable};

/// A backend, as the `backend` label names it.
pub trait Backend {
    const NAME: &'static str;
}

impl Backend for EmbeddedStore {
    const NAME: &'static str = "embedded";
}

impl Backend for ScyllaStore {
    const NAME: &'static str = "scylla";
}

/// `inner`, with every call it answers counted and timed.
pub struct Metered<S: ?Sized> {
    inner: Arc<S>,
    backend: &'static str,
}

impl<S: Backend> Metered<S> {
    /// Wraps `inner`; its error series exist from the start (at zero, or where an earlier
    /// wrapper of this process left them), so a dashboard shows "no errors" rather than
    /// "no data" on a healthy store.
    pub fn new(inner: Arc<S>) -> Self {
        for kind in ERROR_KINDS {
            counter!(ERRORS, "backend" => S::NAME, "kind" => kind).increment(0);
        }
        Self {
            inner,
            backend: S::NAME,
        }
    }
}

impl<S: ?Sized> Metered<S> {
    async fn observe<T>(
        &self,
        repo: &'static str,
        op: &'static str,
        call: impl Future<Output = Result<T, StorageError>>,
    ) -> Result<T, StorageError> {
        let started = Instant::now();
        let result = call.await;
        self.record(repo, op, started.elapsed(), result.as_ref().err());
        result
    }

    fn record(
        &self,
        repo: &'static str,
        op: &'static str,
        took: Duration,
        error: Option<&StorageError>,
    ) {
        let backend = self.backend;
        histogram!(OPERATION_DURATION, "backend" => backend, "repo" => repo, "op" => op)
            .record(took.as_secs_f64());
        let outcome = match error.map(StorageError::fault_kind) {
            None => "ok",
            Some(None) => "refused",
            Some(Some(kind)) => {
                counter!(ERRORS, "backend" => backend, "kind" => kind).increment(1);
                "failed"
            }
        };
        counter!(
            OPERATIONS,
            "backend" => backend, "repo" => repo, "op" => op, "outcome" => outcome
        )
        .increment(1);
    }
}

/// Implements `$trait` for [`Metered`] by forwarding each listed method, measured under
/// `$repo`. Every method is listed, defaulted ones included, so a backend's own override
/// (a batched `save_checkpoints`, say) is the one that runs.
macro_rules! metered {
    ($repo:literal, $trait:ident {
        $(fn $op:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*
    }) => {
        #[async_trait]
        impl<S: $trait + ?Sized> $trait for Metered<S> {
            $(
                async fn $op(&self $(, $arg: $ty)*) -> Result<$ret, StorageError> {
                    self.observe($repo, stringify!($op), self.inner.$op($($arg),*)).await
                }
            )*
        }
    };
}

metered!("guild_config", GuildConfigRepo {
    fn load(&self, guild_id: u64) -> Option<VersionedConfig>;
    fn save(&self, guild_id: u64, expected: u64, config: &GuildConfig) -> u64;
    fn history(&self, guild_id: u64) -> Vec<VersionedConfig>;
    fn rollback(&self, guild_id: u64, expected: u64, to_version: u64) -> u64;
});

metered!("audit", AuditRepo {
    fn append_audit(&self, entries: &[AuditEntry]) -> ();
    fn list_audit(&self, guild_id: u64, from: Timestamp, to: Timestamp, limit: usize)
        -> Vec<AuditEntry>;
});

metered!("usage", UsageRepo {
    fn add_usage(&self, deltas: &[UsageCount]) -> ();
    fn add_usage_flush(&self, flush_id: u64, deltas: &[UsageCount]) -> ();
    fn usage(&self, guild_id: u64, from_day: u32, to_day: u32) -> Vec<UsageCount>;
});

metered!("accounts", AccountRepo {
    fn put_account(&self, account: &Account) -> ();
    fn account(&self, user_id: u64) -> Option<Account>;
    fn touch_account(&self, user_id: u64, at: Timestamp) -> ();
});

metered!("tickets", TicketRepo {
    fn put_ticket(&self, ticket: &Ticket) -> ();
    fn open_ticket(&self, ticket: &Ticket, max_open: u32) -> Option<u64>;
    fn ticket(&self, guild_id: u64, ticket_id: u64) -> Option<Ticket>;
    fn tickets(&self, guild_id: u64) -> Vec<Ticket>;
    fn append_transcript(&self, messages: &[TranscriptMessage]) -> ();
    fn list_tickets(&self, guild_id: u64, query: &TicketQuery) -> Vec<Ticket>;
    fn transcript(&self, guild_id: u64, ticket_id: u64) -> Vec<TranscriptMessage>;
    fn transcript_page(&self, guild_id: u64, ticket_id: u64, after: u64, limit: usize)
        -> Vec<TranscriptMessage>;
});

metered!("workflows", WorkflowRepo {
    fn put_workflow(&self, workflow: &Workflow) -> ();
    fn workflow(&self, guild_id: u64, workflow_id: u64) -> Option<Workflow>;
    fn workflows(&self, guild_id: u64) -> Vec<Workflow>;
    fn delete_workflow(&self, guild_id: u64, workflow_id: u64) -> bool;
    fn put_workflow_variables(&self, variables: &[WorkflowVariable]) -> ();
    fn workflow_variables(&self, guild_id: u64) -> Vec<WorkflowVariable>;
    fn put_workflow_run(&self, run: &WorkflowRun) -> ();
    fn workflow_runs(&self, guild_id: u64) -> Vec<WorkflowRun>;
});

metered!("billing", BillingRepo {
    fn put_subscription(&self, subscription: &Subscription) -> ();
    fn subscription(&self, subscription_id: u64) -> Option<Subscription>;
    fn subscriptions_of_user(&self, user_id: u64) -> Vec<Subscription>;
    fn create_promo(&self, promo: &PromoCode) -> ();
    fn promo(&self, code: &str) -> Option<(PromoCode, u32)>;
    fn promos(&self, limit: usize) -> Vec<(PromoCode, u32)>;
    fn redeem_promo(&self, code: &str, user_id: u64, at: Timestamp) -> u32;
    fn redemptions_of_user(&self, user_id: u64) -> Vec<Redemption>;
});

metered!("premium", PremiumRepo {
    fn receive_event(&self, event: &InboxEvent) -> bool;
    fn pending_events(&self, limit: usize) -> Vec<InboxEvent>;
    fn inbox_event(&self, event_id: &str) -> Option<InboxEvent>;
    fn finish_event(&self, event_id: &str, outcome: &str) -> ();
    fn apply_subscription(&self, subscription: &Subscription) -> bool;
    fn put_slot(&self, slot: &PremiumSlot) -> ();
    fn add_slot(&self, slot: &PremiumSlot, held: usize) -> SlotAdded;
    fn remove_slot(&self, user_id: u64, guild_id: u64) -> bool;
    fn slots_of_user(&self, user_id: u64) -> Vec<PremiumSlot>;
    fn guild_slot(&self, guild_id: u64) -> Option<PremiumSlot>;
});

metered!("cluster", ClusterRepo {
    fn put_node(&self, node: &NodeRecord) -> ();
    fn nodes(&self) -> Vec<NodeRecord>;
    fn remove_node(&self, node_id: u64) -> ();
    fn claim_assignments(&self, leader_epoch: u64) -> ();
    fn assign_shard(&self, shard_id: u32, node_id: u64, expected_epoch: u64, leader_epoch: u64)
        -> ShardAssignment;
    fn assignments(&self) -> Vec<ShardAssignment>;
    fn save_checkpoint(&self, checkpoint: &SessionCheckpoint) -> ();
    fn save_checkpoints(&self, checkpoints: &[SessionCheckpoint]) -> Vec<u32>;
    fn checkpoint(&self, shard_id: u32) -> Option<SessionCheckpoint>;
    fn acquire_lease(&self, name: &str, holder: u64, now: Timestamp, ttl: Duration) -> Lease;
    fn renew_lease(&self, name: &str, holder: u64, epoch: u64, now: Timestamp, ttl: Duration)
        -> Lease;
    fn release_lease(&self, name: &str, holder: u64, epoch: u64) -> ();
    fn lease(&self, name: &str) -> Option<Lease>;
    fn announce_leader(&self, announcement: &LeaderAnnouncement) -> ();
    fn leader_announcement(&self) -> Option<LeaderAnnouncement>;
    fn shard_count(&self) -> Option<u32>;
    fn fix_shard_count(&self, count: u32) -> u32;
    fn resharding(&self) -> Option<Resharding>;
    fn put_resharding(&self, next: &Resharding) -> Resharding;
});

metered!("rights", DataRights {
    fn export_user(&self, user_id: u64) -> UserExport;
    fn delete_user(&self, user_id: u64) -> u64;
    fn delete_guild(&self, guild_id: u64) -> u64;
    fn schedule_guild_deletion(&self, guild_id: u64, at: Timestamp) -> ();
    fn cancel_guild_deletion(&self, guild_id: u64) -> bool;
    fn stored_guilds(&self, shard_id: u32, shard_count: u32) -> Vec<u64>;
    fn scheduled_guild_deletions(&self) -> Vec<(u64, Timestamp)>;
    fn sweep_expired(&self, now: Timestamp) -> u64;
    fn backfill(&self, table: BackfillTable, page: usize, now: Timestamp) -> BackfillProgress;
    fn dump_rows(&self) -> Vec<StoredRow>;
});

metered!("privacy", PrivacyRepo {
    fn put_privacy_request(&self, request: &PrivacyRequest) -> ();
    fn privacy_requests_of(&self, user_id: u64) -> Vec<PrivacyRequest>;
    fn privacy_requests(&self, from: Timestamp, to: Timestamp) -> Vec<PrivacyRequest>;
    fn privacy_flags(&self, user_id: u64) -> PrivacyFlags;
    fn set_privacy_flags(&self, user_id: u64, flags: &PrivacyFlags) -> ();
    fn privacy_flag_changes(&self, since: Timestamp) -> Vec<FlagChange>;
    fn put_export(&self, export: &PreparedExport) -> ();
    fn export_status(&self, user_id: u64, now: Timestamp) -> Option<(Timestamp, Timestamp)>;
    fn take_export(&self, user_id: u64, now: Timestamp) -> Option<PreparedExport>;
    fn mark_browsers_for_clearing(&self, session_ids: &[String], until: Timestamp) -> ();
    fn take_browser_clearing(&self, session_id: &str) -> bool;
});

metered!("web_sessions", WebSessionRepo {
    fn put_web_session(&self, session: &WebSession) -> ();
    fn web_session(&self, id: &str, now: Timestamp) -> Option<WebSession>;
    fn replace_web_session(&self, old: &WebSession, new: &WebSession) -> bool;
    fn delete_web_session(&self, id: &str) -> ();
    fn web_sessions_of(&self, user_id: u64, now: Timestamp) -> Vec<WebSession>;
    fn delete_web_sessions_of(&self, user_id: u64) -> u64;
    fn sweep_web_sessions(&self, now: Timestamp) -> u64;
});

metered!("moderation", ModerationRepo {
    fn create_case(&self, case: &Case) -> u64;
    fn case(&self, guild_id: u64, number: u64) -> Option<Case>;
    fn cases_about(&self, guild_id: u64, target_id: u64, limit: usize) -> Vec<Case>;
    fn cases(&self, guild_id: u64, before: Option<u64>, limit: usize) -> Vec<Case>;
    fn set_case_reason(&self, guild_id: u64, number: u64, reason: &str) -> bool;
});

metered!("automod", AutomodRepo {
    fn put_automod_hit(&self, hit: &AutomodHit) -> ();
    fn automod_hits(&self, guild_id: u64, before: Option<u64>, limit: usize) -> Vec<AutomodHit>;
});

metered!("announcements", AnnouncementRepo {
    fn set_announce_opt_in(&self, shard_id: u32, guild_id: u64, channel_id: Option<u64>) -> ();
    fn announce_opt_ins(&self, shard_id: u32) -> Vec<(u64, u64)>;
    fn create_campaign(&self, campaign: &Campaign) -> ();
    fn campaigns(&self) -> Vec<Campaign>;
    fn cancel_campaign(&self, id: u64, at: Timestamp) -> Campaign;
    fn claim_delivery(&self, delivery: &Delivery, replacing: Option<&str>) -> bool;
    fn finish_delivery(&self, delivery: &Delivery) -> bool;
    fn deliveries(&self, campaign_id: u64, shard_id: Option<u32>) -> Vec<Delivery>;
    fn dm_recipients(&self, after: Option<u64>, limit: usize) -> RecipientPage;
    fn claim_dm_delivery(&self, delivery: &DmDelivery, replacing: Option<&str>) -> bool;
    fn finish_dm_delivery(&self, delivery: &DmDelivery) -> bool;
    fn dm_deliveries(&self, campaign_id: u64, shard_id: Option<u32>) -> Vec<DmDelivery>;
    fn put_announce_schedule(&self, schedule: &AnnounceSchedule) -> ();
    fn announce_schedules(&self, guild_id: u64) -> Vec<AnnounceSchedule>;
    fn delete_announce_schedule(&self, guild_id: u64, schedule_id: u64) -> bool;
});

metered!("timers", TimerRepo {
    fn put_timer(&self, timer: &Timer) -> ();
    fn cancel_timer(&self, guild_id: u64, id: &str) -> bool;
    fn timers_of_guild(&self, guild_id: u64) -> Vec<Timer>;
    fn due_timers(&self, shard_id: u32, now: Timestamp, limit: usize) -> Vec<Timer>;
    fn claim_timer(&self, timer: &Timer, claimant: &str, now: Timestamp, until: Timestamp) -> bool;
    fn complete_timer(&self, guild_id: u64, id: &str, claimant: &str) -> bool;
});

#[cfg(test)]
mod tests {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::*;

    /// A backend whose every load fails as a timed-out ScyllaDB would.
    struct TimingOut;

    impl Backend for TimingOut {
        const NAME: &'static str = "scylla";
    }

    #[async_trait]
    impl GuildConfigRepo for TimingOut {
        async fn load(&self, _: u64) -> Result<Option<VersionedConfig>, StorageError> {
            Err(StorageError::Unavailable {
                kind: "timeout",
                attempts: 3,
                message: "read timeout".into(),
            })
        }
        async fn save(&self, _: u64, _: u64, _: &GuildConfig) -> Result<u64, StorageError> {
            unreachable!()
        }
        async fn history(&self, _: u64) -> Result<Vec<VersionedConfig>, StorageError> {
            unreachable!()
        }
    }

    /// (name, labels) → counter value or histogram sample count.
    fn read(recorder: &DebuggingRecorder) -> Vec<(String, Vec<String>, u64)> {
        let mut out: Vec<_> = recorder
            .snapshotter()
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let key = key.key();
                let labels = key
                    .labels()
                    .map(|l| format!("{}={}", l.key(), l.value()))
                    .collect();
                let value = match value {
                    DebugValue::Counter(n) => n,
                    DebugValue::Histogram(samples) => samples.len() as u64,
                    DebugValue::Gauge(_) => unreachable!("no gauges here"),
                };
                (key.name().to_owned(), labels, value)
            })
            .collect();
        out.sort();
        out
    }

    fn value(seen: &[(String, Vec<String>, u64)], name: &str, labels: &[&str]) -> u64 {
        seen.iter()
            .find(|(n, l, _)| n == name && l == labels)
            .map_or(0, |(_, _, v)| *v)
    }

    #[test]
    fn calls_are_counted_by_outcome_and_failures_by_kind() {
        let recorder = DebuggingRecorder::new();
        let dir = tempfile::tempdir().unwrap();
        metrics::with_local_recorder(&recorder, || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let store = Metered::new(Arc::new(EmbeddedStore::open(dir.path()).unwrap()));
                let config = GuildConfig::default();
                assert_eq!(store.save(7, 0, &config).await.unwrap(), 1);
                assert!(store.load(7).await.unwrap().is_some());
                // A lost compare-and-set is an answer, not a storage failure.
                assert!(matches!(
                    store.save(7, 0, &config).await,
                    Err(StorageError::Conflict { .. })
                ));
                let failing = Metered::new(Arc::new(TimingOut));
                assert!(failing.load(7).await.is_err());
            });
        });

        let seen = read(&recorder);
        let ops = |backend: &str, op: &str, outcome: &str| {
            value(
                &seen,
                OPERATIONS,
                &[
                    &format!("backend={backend}"),
                    "repo=guild_config",
                    &format!("op={op}"),
                    &format!("outcome={outcome}"),
                ],
            )
        };
        assert_eq!(ops("embedded", "save", "ok"), 1);
        assert_eq!(ops("embedded", "save", "refused"), 1);
        assert_eq!(ops("embedded", "load", "ok"), 1);
        assert_eq!(ops("scylla", "load", "failed"), 1);
        let errors = |backend: &str, kind: &str| {
            value(
                &seen,
                ERRORS,
                &[&format!("backend={backend}"), &format!("kind={kind}")],
            )
        };
        assert_eq!(errors("scylla", "timeout"), 1);
        assert_eq!(errors("embedded", "timeout"), 0, "the conflict is no error");
        // Every kind has a series from the start, at zero.
        let embedded_kinds = seen
            .iter()
            .filter(|(n, l, _)| n == ERRORS && l[0] == "backend=embedded")
            .count();
        assert_eq!(embedded_kinds, ERROR_KINDS.len());
        let timed = value(
            &seen,
            OPERATION_DURATION,
            &["backend=embedded", "repo=guild_config", "op=save"],
        );
        assert_eq!(timed, 2, "every call is timed, refused ones included");
    }
}
