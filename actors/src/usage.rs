//! Command usage analytics: which command ran in which channel and hour, counted in process
//! and written in batches by storage's [`UsageAggregator`] (never a write per command). No
//! counter names who ran a command.
//!
//! A user who objected to analytics or restricted processing is not counted: their choice
//! comes from the node's [`PrivacyChoices`] (read once per user and trust period, on a task;
//! the actor never waits for the read).

use std::sync::Arc;

use protonn_storage::{Store, Timestamp, UsageAggregator};

use crate::choices::PrivacyChoices;

/// What the guild actors count command runs with.
pub struct CommandUsage {
    aggregator: Arc<UsageAggregator>,
    /// The node's memory of privacy choices, which workflows share.
    choices: Arc<PrivacyChoices>,
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
            choices: Arc::new(PrivacyChoices::new(Arc::clone(store) as _)),
        })
    }

    /// The node's memory of users' privacy choices.
    pub(crate) fn choices(&self) -> &Arc<PrivacyChoices> {
        &self.choices
    }

    /// Keeps the node's memory of privacy choices in step with changes made anywhere (the
    /// dashboard, other nodes) until `shutdown` resolves: whoever runs the node starts it.
    pub fn spawn_choice_follower(
        self: &Arc<Self>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let choices = Arc::clone(&self.choices);
        tokio::spawn(async move {
            choices
                .follow_changes(crate::choices::CHANGES_EVERY, shutdown)
                .await;
        })
    }

    /// The privacy choice this node remembers for the user, however old (tests look inside a
    /// node with it).
    pub fn remembered_choice(&self, user_id: u64) -> Option<protonn_storage::PrivacyFlags> {
        self.choices.remembered(user_id)
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
        match self.choices.known(run.user_id) {
            Some(flags) if flags.may_analyse() => self.count(run, at),
            Some(_) => {}
            None => {
                let this = Arc::clone(self);
                tokio::spawn(async move {
                    match this.choices.read(run.user_id).await {
                        Ok(flags) if flags.may_analyse() => this.count(run, at),
                        Ok(_) => {}
                        Err(err) => {
                            tracing::warn!(error = %err, "cannot read a user's privacy choices; their command is not counted");
                        }
                    }
                });
            }
        }
    }

    fn count(&self, run: CommandRun, at: Timestamp) {
        self.aggregator
            .record(run.guild_id, run.command, run.channel_id, at);
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use protonn_storage::{EmbeddedStore, PrivacyFlags, PrivacyRepo, UsageRepo};

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
            .any(|user| usage.choices.known(*user).is_none())
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
