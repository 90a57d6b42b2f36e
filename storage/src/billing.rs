use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{StorageError, Timestamp};

/// A premium subscription paid by a user, applying to a guild.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// The payment provider's subscription id, hashed or numbered into a u64 by the caller.
    pub subscription_id: u64,
    pub user_id: u64,
    pub guild_id: Option<u64>,
    pub plan: String,
    pub status: SubscriptionStatus,
    pub current_period_end: Timestamp,
    /// When the provider's event that produced this state occurred: a state is replaced only
    /// by a later one ([`PremiumRepo::apply_subscription`](crate::PremiumRepo)).
    pub updated_at: Timestamp,
    /// Premium slots it pays for (the item's quantity).
    #[serde(default = "one")]
    pub slots: u32,
    /// The provider's own id (`sub_…` for Paddle, an entitlement id for Discord).
    #[serde(default)]
    pub provider_ref: String,
    /// Since when it has been in its status: a past-due subscription keeps its slots for
    /// [`PAST_DUE_GRACE`](crate::PAST_DUE_GRACE) from here.
    #[serde(default)]
    pub status_since: Timestamp,
}

fn one() -> u32 {
    1
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    Trialing,
    Active,
    PastDue,
    Paused,
    Cancelled,
}

/// A promotional code with a redemption cap.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromoCode {
    pub code: String,
    pub percent_off: u8,
    pub max_redemptions: u32,
    pub expires_at: Timestamp,
    /// Premium a redemption grants: `slots` slots for `premium_days` days from redeeming.
    #[serde(default)]
    pub premium_days: u32,
    #[serde(default)]
    pub slots: u32,
    /// Only users who never had a subscription or a redemption may redeem it.
    #[serde(default)]
    pub new_users_only: bool,
}

/// A user's use of a promo code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redemption {
    pub code: String,
    pub user_id: u64,
    pub at: Timestamp,
}

/// Subscriptions and promo codes.
#[async_trait]
pub trait BillingRepo: Send + Sync + 'static {
    /// Creates or replaces the subscription (webhooks deliver the whole state).
    async fn put_subscription(&self, subscription: &Subscription) -> Result<(), StorageError>;

    async fn subscription(
        &self,
        subscription_id: u64,
    ) -> Result<Option<Subscription>, StorageError>;

    /// The user's subscriptions ordered by id.
    async fn subscriptions_of_user(&self, user_id: u64) -> Result<Vec<Subscription>, StorageError>;

    /// Creates a promo code; [`StorageError::Invalid`] if the code already exists.
    async fn create_promo(&self, promo: &PromoCode) -> Result<(), StorageError>;

    async fn promo(&self, code: &str) -> Result<Option<(PromoCode, u32)>, StorageError>;

    /// Promo codes with their redemptions so far, at most `limit` (the operators' page).
    async fn promos(&self, limit: usize) -> Result<Vec<(PromoCode, u32)>, StorageError>;

    /// Redeems `code` for `user_id` at `at`: atomically checks expiry, the cap and that the user
    /// has not used it before, then counts the redemption. Returns the redemptions so far.
    async fn redeem_promo(
        &self,
        code: &str,
        user_id: u64,
        at: Timestamp,
    ) -> Result<u32, StorageError>;

    /// The user's redemptions.
    async fn redemptions_of_user(&self, user_id: u64) -> Result<Vec<Redemption>, StorageError>;
}
