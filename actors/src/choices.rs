//! The node's memory of users' privacy choices (`PrivacyFlags`), for the features that honour
//! them on the event path: analytics skips a user who objected or restricted processing,
//! workflows skip a user who restricted it.
//!
//! A choice is read from storage the first time a user is met and trusted for
//! [`CHOICE_KEPT`], so the event path reads storage at most once per user and period; a choice
//! the user changes applies within that period, and at once on the node where they changed it
//! in Discord ([`remember`](PrivacyChoices::remember)). Reads happen on tasks: actors never
//! wait.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use protonn_storage::{PrivacyFlags, PrivacyRepo, StorageError};

/// How long a user's choice is trusted before it is read again.
pub const CHOICE_KEPT: Duration = Duration::from_secs(60);
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
}
