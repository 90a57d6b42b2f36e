//! The node's memory of users' privacy choices (`PrivacyFlags`), for the features that honour
//! them on the event path: analytics skips a user who objected or restricted processing,
//! workflows skip a user who restricted it.
//!
//! A choice is read from storage the first time a user is met and trusted for
//! [`CHOICE_KEPT`], so the event path reads storage at most once per user and period. A choice
//! the user changes applies at once on the node where they changed it in Discord
//! ([`remember`](PrivacyChoices::remember)), and within [`CHANGES_EVERY`] on every node
//! wherever it was changed (the dashboard, another node): each node asks the store's list of
//! changes ([`PrivacyRepo::privacy_flag_changes`]) and forgets the changed users' choices
//! ([`follow_changes`](PrivacyChoices::follow_changes)), so their next event reads the new
//! one. Reads happen on tasks: actors never wait.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use protonn_storage::{PrivacyFlags, PrivacyRepo, StorageError, Timestamp};

/// How long a user's choice is trusted before it is read again (when no change was listed
/// meanwhile: the bound if the store cannot be asked for changes).
pub const CHOICE_KEPT: Duration = Duration::from_secs(60);
/// How often a node asks the store which users changed their choices: a change made in the
/// dashboard applies on every node within about this long. One small read a second.
pub const CHANGES_EVERY: Duration = Duration::from_secs(1);
/// How far each ask reaches back before the previous one: covers a writer's clock behind
/// this node's, and a read of the old choice that lands just after the change was forgotten
/// (forgotten again on the next asks).
const CLOCK_SLACK: Duration = Duration::from_secs(10);
/// Users whose choice is remembered at most; past it the memory starts over.
const CHOICES_KEPT: usize = 100_000;

pub(crate) struct PrivacyChoices {
    privacy: Arc<dyn PrivacyRepo>,
    /// user id → (their choices, when they were read).
    known: Mutex<HashMap<u64, (PrivacyFlags, Instant)>>,
}

impl PrivacyChoices {
    pub(crate) fn new(privacy: Arc<dyn PrivacyRepo>) -> Self {
        Self {
            privacy,
            known: Mutex::new(HashMap::new()),
        }
    }

    /// The user's choices if read within the trust period.
    pub(crate) fn known(&self, user_id: u64) -> Option<PrivacyFlags> {
        let known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        known
            .get(&user_id)
            .filter(|(_, read)| read.elapsed() < CHOICE_KEPT)
            .map(|(flags, _)| *flags)
    }

    /// Reads the user's choices from storage and remembers them.
    pub(crate) async fn read(&self, user_id: u64) -> Result<PrivacyFlags, StorageError> {
        let flags = self.privacy.privacy_flags(user_id).await?;
        self.remember(user_id, flags);
        Ok(flags)
    }

    /// Remembers choices just stored (the user changed them through this node), so they
    /// apply here at once rather than when the remembered ones expire.
    pub(crate) fn remember(&self, user_id: u64, flags: PrivacyFlags) {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        if known.len() >= CHOICES_KEPT {
            known.clear();
        }
        known.insert(user_id, (flags, Instant::now()));
    }

    /// The user's remembered choice, however old: what tests look at.
    pub(crate) fn remembered(&self, user_id: u64) -> Option<PrivacyFlags> {
        let known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        known.get(&user_id).map(|(flags, _)| *flags)
    }

    /// Forgets the choices of users who changed them at or after `since`, as the store lists
    /// them; returns the `since` of the next ask.
    pub(crate) async fn forget_changed(&self, since: Timestamp) -> Result<Timestamp, StorageError> {
        let asked_at = Timestamp::now();
        let changes = self.privacy.privacy_flag_changes(since).await?;
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        for change in changes {
            known.remove(&change.user_id);
        }
        Ok(asked_at.saturating_sub(CLOCK_SLACK))
    }

    /// Runs [`forget_changed`](Self::forget_changed) every `every` until `shutdown`
    /// resolves. A failed ask is retried from the same point: meanwhile choices are trusted
    /// for [`CHOICE_KEPT`] at most.
    pub(crate) async fn follow_changes(
        &self,
        every: Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let mut since = Timestamp::now().saturating_sub(CLOCK_SLACK);
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = ticks.tick() => match self.forget_changed(since).await {
                    Ok(next) => since = next,
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot ask which privacy choices changed");
                    }
                },
                () = &mut shutdown => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protonn_storage::EmbeddedStore;

    #[tokio::test]
    async fn a_choice_read_once_is_answered_from_memory_for_the_trust_period() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let choices = PrivacyChoices::new(Arc::clone(&store) as _);
        assert_eq!(choices.known(7), None, "never read");
        let restricted = PrivacyFlags {
            restricted: true,
            ..PrivacyFlags::default()
        };
        store.set_privacy_flags(7, &restricted).await.unwrap();
        assert!(!choices.read(7).await.unwrap().may_process());
        // Lifted in storage: memory still answers (no read) until the period ends.
        store
            .set_privacy_flags(7, &PrivacyFlags::default())
            .await
            .unwrap();
        assert_eq!(choices.known(7), Some(restricted));
        let read_long_ago = Instant::now()
            .checked_sub(CHOICE_KEPT)
            .expect("the clock is past one trust period");
        choices.known.lock().unwrap().get_mut(&7).unwrap().1 = read_long_ago;
        assert_eq!(choices.known(7), None, "read again after the period");
        assert!(choices.read(7).await.unwrap().may_process());
        // A change made through this node is known at once.
        choices.remember(7, restricted);
        assert_eq!(choices.known(7), Some(restricted));
    }

    /// A change listed by the store (made by any process) makes the node forget that user's
    /// choice, and only theirs; a change older than the ask is not listed.
    #[tokio::test]
    async fn a_choice_changed_elsewhere_is_forgotten_at_the_next_ask() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let choices = PrivacyChoices::new(Arc::clone(&store) as _);
        let restricted = PrivacyFlags {
            restricted: true,
            ..PrivacyFlags::default()
        };
        store.set_privacy_flags(8, &restricted).await.unwrap();
        let since = Timestamp::now().saturating_add(Duration::from_secs(1));
        for user in [7, 8] {
            assert_eq!(choices.read(user).await.unwrap().restricted, user == 8);
        }
        assert!(choices.forget_changed(since).await.unwrap() < since);
        assert!(choices.known(7).is_some() && choices.known(8).is_some());

        let since = Timestamp::now();
        store.set_privacy_flags(7, &restricted).await.unwrap();
        let next = choices.forget_changed(since).await.unwrap();
        assert_eq!(
            choices.remembered(7),
            None,
            "changed: read again at the next event"
        );
        assert_eq!(choices.remembered(8), Some(restricted), "unchanged: kept");
        assert!(!choices.read(7).await.unwrap().may_process());
        assert!(next <= Timestamp::now());
    }
}
