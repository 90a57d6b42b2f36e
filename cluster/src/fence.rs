//! Fence before reassign: a node's lease on its shards, and the gate that holds its data path
//! to it.
//!
//! The lease runs from when the node *sent* the newest heartbeat the leader acknowledged.
//! The leader counts a node's failure timeout from when it *received* its newest report, which
//! is later, so a node whose lease is `fence` old has always stopped before the leader may
//! give its shards to anyone else (`fence + shard stop < failure timeout`, checked by the
//! config). Counting from acknowledgements, not from anything heard, also fences a node whose
//! reports stopped reaching the leader while the leader's messages still reach it.
//!
//! The gate is read on the data path itself (every batch a shard hands to the guild actors,
//! every event a guild actor is about to handle, every REST request, every reported
//! checkpoint), so a node that wakes from a freeze long after its deadline acts on nothing
//! before its agent has even noticed. A shard found closed by the lapse stays closed until
//! the leader gives it again, like one the agent fenced: the events it refused are past its
//! checkpoint, and only a new owner (or this node, given the shard again) may handle them.

use std::collections::{HashSet, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use protonn_shard::{EventSink, Receipt};
use tokio::sync::Notify;
use tokio::time::Instant;
use twilight_model::gateway::ShardId;
use twilight_model::gateway::event::Event;

/// Heartbeats remembered while unacknowledged; older ones can no longer renew the lease
/// usefully (they are far past any deadline).
const UNACKNOWLEDGED: usize = 64;

pub(crate) struct Fence {
    state: Mutex<State>,
    /// Woken when the lease is renewed or the deadline set.
    renewed: Notify,
}

#[derive(Default)]
struct State {
    /// The leader's fence deadline; `None` until the node first registered.
    deadline: Option<Duration>,
    /// When the newest acknowledged heartbeat (or registration) was sent.
    since: Option<Instant>,
    next_seq: u64,
    sent: VecDeque<(u64, Instant)>,
    /// Shards the fence stopped, refused until the leader gives them again.
    fenced: HashSet<u32>,
}

impl State {
    /// When the lease ends; `None` before the first registration.
    fn expires_at(&self) -> Option<Instant> {
        Some(self.since? + self.deadline?)
    }

    fn holds_lease(&self) -> bool {
        self.expires_at()
            .is_some_and(|expires| Instant::now() < expires)
    }
}

impl Fence {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::default(),
            renewed: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A registration the leader answered, asked at `sent`: the leader counts the node alive
    /// from when it handled it.
    pub(crate) fn registered(&self, deadline: Duration, sent: Instant) {
        {
            let mut state = self.lock();
            state.deadline = Some(deadline);
            state.since = Some(state.since.map_or(sent, |since| since.max(sent)));
        }
        self.renewed.notify_waiters();
    }

    /// Numbers a heartbeat about to be sent.
    pub(crate) fn heartbeat(&self) -> u64 {
        let mut state = self.lock();
        state.next_seq += 1;
        let seq = state.next_seq;
        state.sent.push_back((seq, Instant::now()));
        if state.sent.len() > UNACKNOWLEDGED {
            state.sent.pop_front();
        }
        seq
    }

    /// The leader acknowledged heartbeat `seq`: the lease runs from when it was sent.
    pub(crate) fn acknowledged(&self, seq: u64) {
        {
            let mut state = self.lock();
            while state.sent.front().is_some_and(|&(s, _)| s < seq) {
                state.sent.pop_front();
            }
            let Some(&(s, sent)) = state.sent.front() else {
                return;
            };
            if s != seq {
                return;
            }
            state.sent.pop_front();
            state.since = Some(state.since.map_or(sent, |since| since.max(sent)));
        }
        self.renewed.notify_waiters();
    }

    /// When the lease ends; `None` before the first registration.
    pub(crate) fn expires_at(&self) -> Option<Instant> {
        self.lock().expires_at()
    }

    pub(crate) fn holds_lease(&self) -> bool {
        self.lock().holds_lease()
    }

    /// Whether `shard_id` may hand events to the guild actors, have them handled, report a
    /// checkpoint, or connect again. Asked after the lease lapsed, the shard is fenced at
    /// once: a lease renewed before the agent noticed the lapse must not reopen it.
    pub(crate) fn may_run(&self, shard_id: u32) -> bool {
        let mut state = self.lock();
        if state.fenced.contains(&shard_id) {
            return false;
        }
        if state.holds_lease() {
            return true;
        }
        if state.deadline.is_some() {
            state.fenced.insert(shard_id);
        }
        false
    }

    /// The lease ran out: these shards act on nothing more until given again.
    pub(crate) fn trip(&self, shards: impl IntoIterator<Item = u32>) {
        self.lock().fenced.extend(shards);
    }

    /// The leader gave the shard to this node (again), under a new epoch.
    pub(crate) fn readmit(&self, shard_id: u32) {
        self.lock().fenced.remove(&shard_id);
    }

    /// Resolves once the lease has run out, at the deadline itself.
    pub(crate) async fn lapsed(&self) {
        loop {
            let renewed = self.renewed.notified();
            match self.expires_at() {
                Some(at) if Instant::now() >= at => return,
                Some(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = renewed => {}
                    }
                }
                None => renewed.await,
            }
        }
    }

    /// Resolves once the lease is held again (after a lapse).
    pub(crate) async fn renewed(&self) {
        loop {
            let renewed = self.renewed.notified();
            if self.holds_lease() {
                return;
            }
            renewed.await;
        }
    }
}

/// The node's event sink behind its fence: a fenced shard's events reach no guild actor
/// (the shard's next owner handles them), and it does not reconnect.
pub(crate) struct FencedSink {
    pub(crate) inner: Arc<dyn EventSink>,
    pub(crate) fence: Arc<Fence>,
}

impl EventSink for FencedSink {
    fn deliver(
        &self,
        shard: ShardId,
        events: Vec<Event>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        if self.fence.may_run(shard.number()) {
            self.inner.deliver(shard, events)
        } else {
            tracing::debug!(
                shard_id = shard.number(),
                events = events.len(),
                "fenced: events not handled"
            );
            Box::pin(std::future::ready(()))
        }
    }

    fn deliver_replayed(
        &self,
        shard: ShardId,
        events: Vec<Event>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        if self.fence.may_run(shard.number()) {
            self.inner.deliver_replayed(shard, events)
        } else {
            Box::pin(std::future::ready(()))
        }
    }

    /// A refused batch holds the shard's checkpoint before it.
    fn deliver_tracked(
        &self,
        shard: ShardId,
        events: Vec<Event>,
        replayed: bool,
        receipt: Receipt,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        if self.fence.may_run(shard.number()) {
            self.inner.deliver_tracked(shard, events, replayed, receipt)
        } else {
            tracing::debug!(
                shard_id = shard.number(),
                events = events.len(),
                "fenced: events not handled"
            );
            receipt.refuse();
            Box::pin(std::future::ready(()))
        }
    }

    fn may_run(&self, shard_id: u32) -> bool {
        self.fence.may_run(shard_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_lease_runs_from_when_the_acknowledged_heartbeat_was_sent() {
        let fence = Fence::new();
        assert!(!fence.may_run(0), "no lease before registering");
        fence.registered(Duration::from_secs(3), Instant::now());
        assert!(fence.may_run(0));
        let first = fence.heartbeat();
        tokio::time::advance(Duration::from_secs(2)).await;
        let second = fence.heartbeat();
        // The first heartbeat's acknowledgement arrives late: it renews from its sending.
        fence.acknowledged(first);
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(fence.may_run(0));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(
            !fence.holds_lease(),
            "3 s after the first heartbeat was sent"
        );
        fence.acknowledged(second);
        assert!(fence.may_run(0));
        // An old acknowledgement never moves the lease back.
        fence.acknowledged(first);
        assert_eq!(
            fence.expires_at(),
            Some(Instant::now() + Duration::from_secs(2))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_tripped_shard_stays_fenced_until_given_again() {
        let fence = Fence::new();
        fence.registered(Duration::from_secs(3), Instant::now());
        let lapsed = tokio::spawn({
            let fence = Arc::clone(&fence);
            async move { fence.lapsed().await }
        });
        tokio::time::advance(Duration::from_secs(3)).await;
        lapsed.await.unwrap();
        fence.trip([1, 2]);
        fence.registered(Duration::from_secs(3), Instant::now());
        assert!(fence.may_run(0), "the lease is held again");
        assert!(!fence.may_run(1) && !fence.may_run(2));
        fence.readmit(1);
        assert!(fence.may_run(1) && !fence.may_run(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_shard_found_closed_by_a_lapse_stays_closed_when_the_lease_is_renewed() {
        let fence = Fence::new();
        fence.registered(Duration::from_secs(3), Instant::now());
        tokio::time::advance(Duration::from_secs(3)).await;
        // A woken node: a guild actor asks before the agent noticed the lapse.
        assert!(!fence.may_run(4));
        fence.registered(Duration::from_secs(3), Instant::now());
        assert!(fence.holds_lease());
        assert!(
            !fence.may_run(4),
            "it refused events: only a new start reopens it"
        );
        assert!(
            fence.may_run(5),
            "a shard not asked about during the lapse runs on"
        );
        fence.readmit(4);
        assert!(fence.may_run(4));
    }
}
