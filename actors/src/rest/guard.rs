//! The invalid-request guard. Discord bans a bot from REST (for about an hour) after 10,000
//! responses of 401, 403 or 429 (shared-scope 429s excepted) in 10 minutes. The guard counts
//! them, this node's and (in a cluster) the whole bot's as the coordinator reports it, and
//! holds requests back long before the ban: first everything but interaction responses,
//! then everything. A 401 means the token is no longer valid: all REST stops until an
//! operator acts (restarts with a valid token; in a cluster, `protonn rest-resume`).

use std::collections::VecDeque;
use std::sync::{Mutex, OnceLock, PoisonError};

use metrics::gauge;
use tokio::time::{Duration, Instant};

use crate::metrics::{REST_HALTED, REST_INVALID_REQUESTS};

/// Discord's window for invalid requests.
pub const INVALID_WINDOW: Duration = Duration::from_secs(600);
/// Discord's limit within [`INVALID_WINDOW`].
pub const DISCORD_INVALID_LIMIT: u64 = 10_000;
/// Granularity of the sliding count.
const SLOT: Duration = Duration::from_secs(10);

/// Invalid responses within the last [`INVALID_WINDOW`], in slots of 10 s.
#[derive(Debug, Default)]
pub struct SlidingCount {
    slots: VecDeque<(Instant, u64)>,
}

impl SlidingCount {
    pub fn add(&mut self, n: u64) {
        if n == 0 {
            return;
        }
        let now = Instant::now();
        match self.slots.back_mut() {
            Some((start, count)) if now < *start + SLOT => *count += n,
            _ => self.slots.push_back((now, n)),
        }
    }

    pub fn total(&mut self) -> u64 {
        let now = Instant::now();
        while self
            .slots
            .front()
            .is_some_and(|(start, _)| *start + SLOT + INVALID_WINDOW <= now)
        {
            self.slots.pop_front();
        }
        self.slots.iter().map(|(_, count)| count).sum()
    }
}

/// When the guard holds requests back, by the count in the window.
#[derive(Clone, Copy, Debug)]
pub struct GuardLimits {
    /// From this count on, only interaction responses are sent.
    pub hold_messages_at: u64,
    /// From this count on, nothing is sent.
    pub hold_all_at: u64,
}

impl Default for GuardLimits {
    /// A quarter and half of Discord's limit: a node reports its count every heartbeat, so
    /// the cluster's view lags by one, and the margin absorbs that many times over.
    fn default() -> Self {
        Self {
            hold_messages_at: DISCORD_INVALID_LIMIT / 4,
            hold_all_at: DISCORD_INVALID_LIMIT / 2,
        }
    }
}

/// What the guard lets through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuardState {
    Open,
    /// Only interaction responses.
    HoldingMessages,
    HoldingAll,
    /// A 401: nothing until an operator acts.
    Halted,
    /// A cluster node without its lease: nothing, as its shards may run elsewhere.
    Fenced,
}

/// What a node tells the coordinator each heartbeat.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuardReport {
    /// Invalid responses since the last report.
    pub invalid: u64,
    /// 401s since the last report.
    pub unauthorized: u64,
}

pub struct InvalidRequestGuard {
    limits: GuardLimits,
    state: Mutex<Counts>,
    /// Whether the node may send at all: in a cluster, only while it holds its lease (a
    /// fenced node's shards may already run elsewhere). Read at every admission.
    gate: OnceLock<Box<dyn Fn() -> bool + Send + Sync>>,
}

impl std::fmt::Debug for InvalidRequestGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InvalidRequestGuard")
            .field("limits", &self.limits)
            .field("state", &self.state)
            .field("gated", &self.gate.get().is_some())
            .finish()
    }
}

#[derive(Debug, Default)]
struct Counts {
    local: SlidingCount,
    /// The whole bot's count, as the coordinator last reported it.
    cluster: u64,
    unreported: GuardReport,
    halted: bool,
    /// Resumes the coordinator had ordered when this node halted: a later one lifts it.
    halted_before_resume: u64,
    resumes_seen: u64,
}

impl InvalidRequestGuard {
    pub fn new(limits: GuardLimits) -> Self {
        let guard = Self {
            limits,
            state: Mutex::default(),
            gate: OnceLock::new(),
        };
        guard.publish(&mut guard.lock());
        guard
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends only while `open` says so (set once, by a cluster node: its lease).
    pub fn set_gate(&self, open: impl Fn() -> bool + Send + Sync + 'static) {
        let _ = self.gate.set(Box::new(open));
    }

    /// Whether a request may go now; `exempt` for interaction responses.
    pub fn admits(&self, exempt: bool) -> bool {
        match self.state() {
            GuardState::Open => true,
            GuardState::HoldingMessages => exempt,
            GuardState::HoldingAll | GuardState::Halted | GuardState::Fenced => false,
        }
    }

    pub fn state(&self) -> GuardState {
        if self.gate.get().is_some_and(|open| !open()) {
            return GuardState::Fenced;
        }
        let mut counts = self.lock();
        self.state_of(&mut counts).0
    }

    fn state_of(&self, counts: &mut Counts) -> (GuardState, u64) {
        let seen = counts.local.total().max(counts.cluster);
        let state = if counts.halted {
            GuardState::Halted
        } else if seen >= self.limits.hold_all_at {
            GuardState::HoldingAll
        } else if seen >= self.limits.hold_messages_at {
            GuardState::HoldingMessages
        } else {
            GuardState::Open
        };
        (state, seen)
    }

    fn publish(&self, counts: &mut Counts) {
        let (state, seen) = self.state_of(counts);
        gauge!(REST_INVALID_REQUESTS).set(seen as f64);
        gauge!(REST_HALTED).set(if state == GuardState::Halted {
            1.0
        } else {
            0.0
        });
    }

    /// A 401, 403 or non-shared 429 from Discord.
    pub(super) fn record_invalid(&self, unauthorized: bool) {
        let mut counts = self.lock();
        counts.local.add(1);
        counts.unreported.invalid += 1;
        if unauthorized {
            counts.unreported.unauthorized += 1;
            if !counts.halted {
                tracing::error!(
                    "Discord answered 401: the bot token is not valid; all REST requests stop until an operator acts"
                );
            }
            counts.halted = true;
            counts.halted_before_resume = counts.resumes_seen;
        }
        self.publish(&mut counts);
    }

    /// What happened since the last report, for the coordinator.
    pub fn take_report(&self) -> GuardReport {
        std::mem::take(&mut self.lock().unreported)
    }

    /// The coordinator's view: the bot's count in the window, whether the cluster is halted,
    /// and how many times an operator lifted a halt.
    pub fn apply_cluster(&self, invalid_in_window: u64, halted: bool, resumes: u64) {
        let mut counts = self.lock();
        counts.cluster = invalid_in_window;
        counts.resumes_seen = resumes;
        if halted {
            counts.halted = true;
            counts.halted_before_resume = resumes;
        } else if counts.halted && resumes > counts.halted_before_resume {
            tracing::warn!("REST resumed by an operator");
            counts.halted = false;
        }
        self.publish(&mut counts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_count_slides_over_ten_minutes() {
        let mut count = SlidingCount::default();
        count.add(3);
        tokio::time::advance(Duration::from_secs(300)).await;
        count.add(2);
        assert_eq!(count.total(), 5);
        tokio::time::advance(Duration::from_secs(311)).await;
        assert_eq!(count.total(), 2);
        tokio::time::advance(Duration::from_secs(300)).await;
        assert_eq!(count.total(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_guard_holds_messages_then_everything_then_lets_go() {
        let guard = InvalidRequestGuard::new(GuardLimits {
            hold_messages_at: 3,
            hold_all_at: 5,
        });
        for _ in 0..3 {
            assert!(guard.admits(false));
            guard.record_invalid(false);
        }
        assert_eq!(guard.state(), GuardState::HoldingMessages);
        assert!(!guard.admits(false) && guard.admits(true));
        // The rest of the cluster's count holds this node back too.
        guard.apply_cluster(5, false, 0);
        assert!(!guard.admits(true));
        guard.apply_cluster(0, false, 0);
        assert_eq!(guard.state(), GuardState::HoldingMessages);
        tokio::time::advance(INVALID_WINDOW + SLOT).await;
        assert_eq!(guard.state(), GuardState::Open);
        assert_eq!(
            guard.take_report(),
            GuardReport {
                invalid: 3,
                unauthorized: 0
            }
        );
        assert_eq!(guard.take_report(), GuardReport::default());
    }

    #[test]
    fn a_401_halts_until_a_resume_ordered_after_it() {
        let guard = InvalidRequestGuard::new(GuardLimits::default());
        guard.apply_cluster(0, false, 1);
        guard.record_invalid(true);
        assert_eq!(guard.state(), GuardState::Halted);
        assert!(!guard.admits(true));
        // A grant computed before the coordinator heard of the 401 does not lift it.
        guard.apply_cluster(0, false, 1);
        assert_eq!(guard.state(), GuardState::Halted);
        // The coordinator heard, and tells everyone.
        guard.apply_cluster(0, true, 1);
        assert_eq!(guard.state(), GuardState::Halted);
        // The operator resumed.
        guard.apply_cluster(0, false, 2);
        assert_eq!(guard.state(), GuardState::Open);
        assert_eq!(guard.take_report().unauthorized, 1);
    }

    #[test]
    fn a_closed_gate_admits_nothing_not_even_interactions() {
        let guard = InvalidRequestGuard::new(GuardLimits::default());
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        guard.set_gate({
            let open = std::sync::Arc::clone(&open);
            move || open.load(std::sync::atomic::Ordering::Relaxed)
        });
        assert!(guard.admits(false));
        open.store(false, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(guard.state(), GuardState::Fenced);
        assert!(!guard.admits(true) && !guard.admits(false));
        open.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(guard.state(), GuardState::Open);
    }
}
