//! How far a shard's events have been *handled*, not only handed to the sink.
//!
//! Each batch the forwarder delivers comes with a [`Receipt`]; the consumer keeps a clone
//! with every event it queues and drops it once the event is handled. The shard's checkpoint
//! moves past a batch only when every clone of its receipt is gone and every batch before it
//! is too, so a resume from the checkpoint (after a crash, or by a node that took the shard
//! over) replays whatever was still waiting in a mailbox. An event the consumer refuses
//! ([`Receipt::admit`] says no: a fenced node may no longer handle it) pins the checkpoint
//! before its batch for good: the next owner resumes from a point before it, so refusing
//! loses nothing. A drain of a shard the node still may run hands the session over past
//! everything it read ([`Ledger::hand_over`]): from then on every event of the runner is
//! admitted, fenced or not, since the next owner starts after them and nobody else would
//! handle them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use crate::{EventSink, ExportedSession};

/// One shard runner's batches in delivery order, and the checkpoint they have reached.
pub struct Ledger {
    shard_id: u32,
    /// Read by [`Receipt::admit`]: the same gate that decides whether the shard may
    /// deliver or reconnect.
    gate: Arc<dyn EventSink>,
    /// A drain exported the session past every event read: they are this node's to handle.
    /// Set under the state's lock (a refusal is decided under it too), read without it.
    handed_over: AtomicBool,
    state: Mutex<LedgerState>,
    /// Woken whenever the oldest outstanding batch settles.
    settled: Notify,
}

struct LedgerState {
    /// Index of `outstanding[0]`.
    first: u64,
    outstanding: VecDeque<Entry>,
    /// Where a resume loses nothing this node has not handled.
    checkpoint: Option<ExportedSession>,
    /// An event was refused: the checkpoint stays before it.
    refused: bool,
}

struct Entry {
    /// The session as far as this batch reaches.
    session: Option<ExportedSession>,
    settled: bool,
    refused: bool,
}

impl Ledger {
    /// `start`: the adopted session, a point the previous owner handed over.
    pub fn new(shard_id: u32, gate: Arc<dyn EventSink>, start: Option<ExportedSession>) -> Self {
        Self {
            shard_id,
            gate,
            handed_over: AtomicBool::new(false),
            state: Mutex::new(LedgerState {
                first: 0,
                outstanding: VecDeque::new(),
                checkpoint: start,
                refused: false,
            }),
            settled: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LedgerState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The receipt of the next batch, which takes the session as far as `session`.
    pub fn issue(self: &Arc<Self>, session: Option<ExportedSession>) -> Receipt {
        let mut state = self.lock();
        let index = state.first + state.outstanding.len() as u64;
        state.outstanding.push_back(Entry {
            session,
            settled: false,
            refused: false,
        });
        Receipt(Arc::new(Batch {
            ledger: Arc::clone(self),
            index,
        }))
    }

    /// Every event of the session up to this point was handled here (or shed on purpose);
    /// `None` before READY when nothing was adopted.
    pub fn checkpoint(&self) -> Option<ExportedSession> {
        self.lock().checkpoint.clone()
    }

    /// Whether an event was refused: past the checkpoint, this node's handling has a hole.
    pub fn refused(&self) -> bool {
        self.lock().refused
    }

    /// A drain is about to export the session past every event read: `true` if it may,
    /// and then every event of this runner is admitted from now on (the next owner starts
    /// after them). `false` if the gate is closed (a fenced node's drain: the session goes to
    /// nobody, or the next owner resumes from the leader's checkpoint) or an event was
    /// refused already: then the drain hands over [`Ledger::checkpoint`] instead, and what
    /// is still queued stays refused.
    pub fn hand_over(&self) -> bool {
        // Under the lock, so no refusal is decided between the check and the flag.
        let state = self.lock();
        if !self.gate.may_run(self.shard_id) {
            return false;
        }
        self.handed_over.store(true, Ordering::Release);
        !state.refused && state.outstanding.iter().all(|entry| !entry.refused)
    }

    /// Resolves once every batch issued so far has settled.
    pub async fn all_settled(&self) {
        loop {
            let settled = self.settled.notified();
            if self.lock().outstanding.is_empty() {
                return;
            }
            settled.await;
        }
    }

    fn with_entry(&self, index: u64, change: impl FnOnce(&mut Entry)) {
        let mut state = self.lock();
        let Some(offset) = index.checked_sub(state.first) else {
            return;
        };
        if let Some(entry) = state.outstanding.get_mut(offset as usize) {
            change(entry);
        }
        let mut moved = false;
        while state.outstanding.front().is_some_and(|entry| entry.settled) {
            let entry = state.outstanding.pop_front().expect("checked above");
            state.first += 1;
            moved = true;
            state.refused |= entry.refused;
            if !state.refused && entry.session.is_some() {
                state.checkpoint = entry.session;
            }
        }
        drop(state);
        if moved {
            self.settled.notify_waiters();
        }
    }
}

/// A delivered batch, outstanding while any clone is alive. Dropping the last clone settles
/// the batch: handled (or shed on purpose), unless an event of it was refused.
#[derive(Clone)]
pub struct Receipt(Arc<Batch>);

struct Batch {
    ledger: Arc<Ledger>,
    index: u64,
}

impl Drop for Batch {
    fn drop(&mut self) {
        self.ledger
            .with_entry(self.index, |entry| entry.settled = true);
    }
}

impl Receipt {
    pub fn shard_id(&self) -> u32 {
        self.0.ledger.shard_id
    }

    /// Whether the consumer may handle an event of this batch now; if not, the batch is
    /// refused (as by [`Receipt::refuse`]). Read at handling time: a node fenced since the
    /// event was queued must not act on it (another node may run the shard), unless a drain
    /// handed the session over past it. Decided under the ledger's lock, so a drain never
    /// hands over a point past an event refused meanwhile.
    pub fn admit(&self) -> bool {
        let ledger = &self.0.ledger;
        // The usual case takes no lock.
        if ledger.handed_over.load(Ordering::Acquire) || ledger.gate.may_run(ledger.shard_id) {
            return true;
        }
        let mut state = ledger.lock();
        if ledger.handed_over.load(Ordering::Acquire) {
            return true;
        }
        let offset = self.0.index - state.first;
        state.outstanding[offset as usize].refused = true;
        false
    }

    /// An event of the batch is not handled here: the checkpoint never passes this batch,
    /// so whoever resumes the session next replays it.
    pub fn refuse(&self) {
        self.0
            .ledger
            .with_entry(self.0.index, |entry| entry.refused = true);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicBool, Ordering};

    use twilight_model::gateway::ShardId;
    use twilight_model::gateway::event::Event;

    use super::*;

    fn at(sequence: u64) -> Option<ExportedSession> {
        Some(ExportedSession {
            shard_id: 0,
            session_id: "s".into(),
            sequence,
            resume_url: None,
        })
    }

    /// A node's gate, opened and closed by the test (closed: a fenced node's).
    pub(crate) struct Switch(AtomicBool);

    impl EventSink for Switch {
        fn deliver(
            &self,
            _shard: ShardId,
            _events: Vec<Event>,
        ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
            Box::pin(std::future::ready(()))
        }

        fn may_run(&self, _shard_id: u32) -> bool {
            self.0.load(Ordering::SeqCst)
        }
    }

    pub(crate) fn switch(open: bool) -> Arc<Switch> {
        Arc::new(Switch(AtomicBool::new(open)))
    }

    fn sequence(ledger: &Ledger) -> Option<u64> {
        ledger.checkpoint().map(|c| c.sequence)
    }

    #[tokio::test]
    async fn the_checkpoint_passes_a_batch_only_once_it_and_every_earlier_one_settled() {
        let ledger = Arc::new(Ledger::new(0, switch(true), at(1)));
        let first = ledger.issue(at(5));
        let held = first.clone();
        let second = ledger.issue(at(9));
        drop(first);
        assert_eq!(sequence(&ledger), Some(1), "a clone of the first is alive");
        drop(second);
        assert_eq!(
            sequence(&ledger),
            Some(1),
            "the first still holds the second back"
        );
        let waiting = tokio::spawn({
            let ledger = Arc::clone(&ledger);
            async move { ledger.all_settled().await }
        });
        drop(held);
        waiting.await.unwrap();
        assert_eq!(sequence(&ledger), Some(9));
        assert!(!ledger.refused());
    }

    #[test]
    fn a_refused_event_pins_the_checkpoint_before_its_batch() {
        let ledger = Arc::new(Ledger::new(0, switch(true), at(1)));
        let handled = ledger.issue(at(5));
        let refused = ledger.issue(at(9));
        let after = ledger.issue(at(12));
        refused.refuse();
        drop((handled, refused, after));
        assert_eq!(sequence(&ledger), Some(5));
        assert!(ledger.refused());
        drop(ledger.issue(at(20)));
        assert_eq!(sequence(&ledger), Some(5), "nothing moves it past the hole");
    }

    #[test]
    fn after_a_hand_over_every_event_is_admitted_and_a_refusal_before_it_shows() {
        let gate = switch(true);
        let ledger = Arc::new(Ledger::new(0, Arc::clone(&gate) as _, at(1)));
        let queued = ledger.issue(at(5));
        assert!(ledger.hand_over(), "nothing was refused");
        gate.0.store(false, Ordering::SeqCst);
        assert!(
            queued.admit(),
            "the next owner starts after it: handled here, fenced or not"
        );

        let ledger = Arc::new(Ledger::new(0, switch(false), at(1)));
        let queued = ledger.issue(at(5));
        assert!(
            !ledger.hand_over(),
            "a fenced node's drain hands over the checkpoint"
        );
        assert!(!queued.admit(), "fenced, and not handed over");
        drop(queued);
        assert_eq!(sequence(&ledger), Some(1));

        let gate = switch(false);
        let ledger = Arc::new(Ledger::new(0, Arc::clone(&gate) as _, at(1)));
        let queued = ledger.issue(at(5));
        assert!(!queued.admit());
        gate.0.store(true, Ordering::SeqCst);
        assert!(!ledger.hand_over(), "an event was refused before the drain");
    }
}
