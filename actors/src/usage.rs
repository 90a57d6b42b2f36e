//! Command usage analytics: which command ran in which channel and hour, counted in process
//! and written in batches by storage's [`UsageAggregator`] (never a write per command). No
//! counter names who ran a command.
//!
//! A user who objected to analytics or restricted processing is not counted. Their choice
//! is read from storage the first time they run a command and remembered for
//! [`CHOICE_KEPT`], so the command path reads storage at most once per user and period; a
//! choice the user changes applies within that period. The actor never waits for the read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use protonn_storage::{PrivacyRepo, Store, Timestamp, UsageAggregator};

/// How long a user's analytics choice is trusted before it is read again.
pub const CHOICE_KEPT: Duration = Duration::from_secs(60);
/// Users whose choice is remembered at most; past it the memory starts over.
const CHOICES_KEPT: usize = 100_000;

/// What the guild actors count command runs with.
pub struct CommandUsage {
    aggregator: Arc<UsageAggregator>,
    privacy: Arc<dyn PrivacyRepo>,
    /// user id → (may be counted, when that was read).
    choices: Mutex<HashMap<u64, (bool, Instant)>>,
}

impl std::fmt::Debug for CommandUsage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandUsage").finish_non_exhaustive()
    }
}

/// One command run to count.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CommandRun {
    pub(crate) guild_id: u64,
    pub(crate) command: &'static str,
    pub(crate) channel_id: u64,
    pub(crate) user_id: u64,
}

impl CommandUsage {
    pub fn new(store: &Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Self {
            aggregator: UsageAggregator::new(Arc::clone(store) as _),
            privacy: Arc::clone(store) as _,
            choices: Mutex::new(HashMap::new()),
        })
    }

    /// The counts waiting to be written: whoever runs the node flushes them
    /// ([`UsageAggregator::spawn_flusher`]), also once more at shutdown.
    pub fn aggregator(&self) -> &Arc<UsageAggregator> {
        &self.aggregator
    }

    /// Counts a run: now if the user's choice is known, else once it is read (on a task of
    /// its own). A choice storage cannot give counts as an objection.
    pub(crate) fn record(self: &Arc<Self>, run: CommandRun) {
        let at = Timestamp::now();
        match self.known_choice(run.user_id) {
            Some(true) => self.count(run, at),
            Some(false) => {}
            None => {
                let this = Arc::clone(self);
                tokio::spawn(async move {
                    let may_count = match this.privacy.privacy_flags(run.user_id).await {
                        Ok(flags) => flags.may_analyse(),
                        Err(err) => {
                            tracing::warn!(error = %err, "cannot read a user's privacy choices; their command is not counted");
                            return;
                        }
                    };
                    if may_count {
                        this.count(run, at);
                    }
                    this.remember(run.user_id, may_count);
                });
            }
        }
    }

    fn count(&self, run: CommandRun, at: Timestamp) {
        self.aggregator
            .record(run.guild_id, run.command, run.channel_id, at);
    }

    fn known_choice(&self, user_id: u64) -> Option<bool> {
        let choices = self.choices.lock().unwrap_or_else(PoisonError::into_inner);
        choices
            .get(&user_id)
            .filter(|(_, read)| read.elapsed() < CHOICE_KEPT)
            .map(|(may_count, _)| *may_count)
    }

    fn remember(&self, user_id: u64, may_count: bool) {
        let mut choices = self.choices.lock().unwrap_or_else(PoisonError::into_inner);
        if choices.len() >= CHOICES_KEPT {
            choices.clear();
        }
        choices.insert(user_id, (may_count, Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protonn_storage::{EmbeddedStore, PrivacyFlags, UsageRepo};

    async fn counted(store: &Arc<EmbeddedStore>, usage: &Arc<CommandUsage>) -> u64 {
        usage.aggregator.flush().await.unwrap();
        let today = Timestamp::now().day();
        store
            .usage(1, today - 1, today)
            .await
            .unwrap()
            .iter()
            .map(|c| c.count)
            .sum()
    }

    #[tokio::test]
    async fn users_who_object_or_restrict_are_not_counted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let objects = PrivacyFlags {
            objects: true,
            ..PrivacyFlags::default()
        };
        let restricted = PrivacyFlags {
            restricted: true,
            ..PrivacyFlags::default()
        };
        store.set_privacy_flags(20, &objects).await.unwrap();
        store.set_privacy_flags(30, &restricted).await.unwrap();
        let usage = CommandUsage::new(&(Arc::clone(&store) as Arc<dyn Store>));
        let run = |user_id| CommandRun {
            guild_id: 1,
            command: "ping",
            channel_id: 5,
            user_id,
        };
        for user in [10, 20, 30] {
            usage.record(run(user));
        }
        // The first runs wait for the choices to be read.
        let deadline = Instant::now() + Duration::from_secs(10);
        while [10, 20, 30]
            .iter()
            .any(|user| usage.known_choice(*user).is_none())
        {
            assert!(Instant::now() < deadline, "choices never read");
            tokio::task::yield_now().await;
        }
        assert_eq!(counted(&store, &usage).await, 1);
        // Known now: counted (or not) at once.
        for user in [10, 20, 30, 10] {
            usage.record(run(user));
        }
        assert_eq!(counted(&store, &usage).await, 3);
    }
}
