use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{StorageError, Timestamp};

/// A user who logged in to the dashboard or otherwise has an account with us.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub user_id: u64,
    pub created_at: Timestamp,
    /// Last activity; the account is purged after [`Retention::inactive_accounts`] without any.
    ///
    /// [`Retention::inactive_accounts`]: crate::Retention::inactive_accounts
    pub last_active: Timestamp,
    pub locale: Option<String>,
    /// Whether the user agreed to product announcements (privacy centre: consent).
    pub announcements_consent: bool,
}

/// Users and accounts.
#[async_trait]
pub trait AccountRepo: Send + Sync + 'static {
    /// Creates or replaces the account.
    async fn put_account(&self, account: &Account) -> Result<(), StorageError>;

    async fn account(&self, user_id: u64) -> Result<Option<Account>, StorageError>;

    /// Records activity at `at` (never moves `last_active` backwards). Creates the account
    /// with defaults if it does not exist.
    async fn touch_account(&self, user_id: u64, at: Timestamp) -> Result<(), StorageError>;
}
