//! Premium: the payment provider's inbox, premium slots and the guild's plan.
//!
//! A user's *entitlements* (one per slot) come from their subscriptions (Paddle, later Discord
//! app subscriptions) and promo redemptions, whatever the source. The user assigns slots to
//! guilds they manage; a guild's premium is one row ([`PremiumSlot`]), read by id, so the
//! guild's plan is one key lookup ([`guild_plan`]). When entitlements change,
//! [`refresh_slots`] renews the dates of the slots still paid for and removes the others
//! (latest assigned first).

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{
    BillingRepo, Plan, PromoCode, StorageError, Subscription, SubscriptionStatus, Timestamp,
};

/// A past-due subscription keeps its slots this long (Paddle retries the payment meanwhile).
pub const PAST_DUE_GRACE: Duration = Duration::from_secs(7 * 86_400);
/// An active subscription's slots outlive its period by this much: the renewal's event may
/// arrive a little after the period ends, and premium should not flicker meanwhile.
pub const RENEWAL_SLACK: Duration = Duration::from_secs(86_400);

/// A verified webhook delivery, kept until it is applied; `event_id` deduplicates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxEvent {
    pub event_id: String,
    pub event_type: String,
    pub occurred_at: Timestamp,
    pub received_at: Timestamp,
    /// The raw body, as verified; dropped once processed (it names the customer).
    pub body: Option<String>,
    /// `None` while pending; what processing did otherwise (`applied`, `stale`, …).
    pub outcome: Option<String>,
    /// The Discord user the event is about (the checkout's `custom_data`), when known:
    /// indexed in `user_refs`, so their export lists the event and their erasure
    /// anonymises it. Kept with the processed event until `Retention::billing_inbox`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<u64>,
}

/// What an erasure leaves of an event about the user: the id (so a redelivery is still a
/// duplicate), type, times and outcome; no body, no user.
pub(crate) fn anonymised_event(mut event: InboxEvent) -> InboxEvent {
    event.body = None;
    event.user_id = None;
    event.outcome.get_or_insert_with(|| "erased".to_owned());
    event
}

/// The index entry of an inbox event.
pub(crate) fn event_ref(event: &InboxEvent) -> crate::row_ref::RowRef {
    crate::row_ref::RowRef::InboxEvent {
        id: event.event_id.clone(),
    }
}

/// Until when a processed event is kept.
pub(crate) fn event_expiry(event: &InboxEvent, retention: &crate::Retention) -> Timestamp {
    event.received_at.saturating_add(retention.billing_inbox)
}

/// One premium slot of a user, assigned to a guild.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PremiumSlot {
    pub guild_id: u64,
    pub user_id: u64,
    pub assigned_at: Timestamp,
    pub plan: Plan,
    /// The guild has `plan` until then, unless renewed by [`refresh_slots`] before.
    pub until: Timestamp,
}

/// The webhook inbox and premium slots.
#[async_trait]
pub trait PremiumRepo: Send + Sync + 'static {
    /// Stores a verified event unless its `event_id` was received before; `true` if it is new.
    async fn receive_event(&self, event: &InboxEvent) -> Result<bool, StorageError>;

    /// Events not yet processed, oldest received first.
    async fn pending_events(&self, limit: usize) -> Result<Vec<InboxEvent>, StorageError>;

    async fn inbox_event(&self, event_id: &str) -> Result<Option<InboxEvent>, StorageError>;

    /// Marks an event processed with `outcome`, dropping its body; its id stays known.
    async fn finish_event(&self, event_id: &str, outcome: &str) -> Result<(), StorageError>;

    /// Stores `subscription` unless the stored one is as recent or more (`updated_at`):
    /// a late, older event never overwrites a newer state. `true` if stored.
    async fn apply_subscription(&self, subscription: &Subscription) -> Result<bool, StorageError>;

    /// Creates or replaces a slot; [`StorageError::Invalid`] if another user's slot holds
    /// the guild.
    async fn put_slot(&self, slot: &PremiumSlot) -> Result<(), StorageError>;

    /// Adds the user's slot on `slot.guild_id`, atomically with every other assignment: only
    /// while the user holds at most `held` slots on other guilds (the count the caller checked
    /// against their entitlements) and no other user's live slot holds the guild (an ended one
    /// is replaced). Adding a guild the user's slot already holds renews it.
    async fn add_slot(&self, slot: &PremiumSlot, held: usize) -> Result<SlotAdded, StorageError>;

    /// Frees the user's slot on the guild; `false` if there was none.
    async fn remove_slot(&self, user_id: u64, guild_id: u64) -> Result<bool, StorageError>;

    /// The user's slots, in the order they were assigned.
    async fn slots_of_user(&self, user_id: u64) -> Result<Vec<PremiumSlot>, StorageError>;

    /// The slot that holds the guild, expired or not.
    async fn guild_slot(&self, guild_id: u64) -> Result<Option<PremiumSlot>, StorageError>;
}

/// The guild's plan at `now` from its slot: what a guild actor loads with its config.
pub fn plan_at(slot: Option<&PremiumSlot>, now: Timestamp) -> Plan {
    slot.filter(|slot| slot.until > now)
        .map_or(Plan::Free, |slot| slot.plan)
}

/// The guild's plan at `now`: one key read.
pub async fn guild_plan(
    store: &(impl PremiumRepo + ?Sized),
    guild_id: u64,
    now: Timestamp,
) -> Result<Plan, StorageError> {
    Ok(plan_at(store.guild_slot(guild_id).await?.as_ref(), now))
}

/// Premium one slot's worth: a plan until an instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entitlement {
    pub plan: Plan,
    pub until: Timestamp,
}

/// Until when a subscription in its current state pays for premium (`None`: it does not).
pub fn subscription_until(subscription: &Subscription) -> Option<Timestamp> {
    match subscription.status {
        SubscriptionStatus::Trialing | SubscriptionStatus::Active => Some(
            subscription
                .current_period_end
                .saturating_add(RENEWAL_SLACK),
        ),
        SubscriptionStatus::PastDue => {
            Some(subscription.status_since.saturating_add(PAST_DUE_GRACE))
        }
        SubscriptionStatus::Paused | SubscriptionStatus::Cancelled => None,
    }
}

/// The user's entitlements at `now`, one per slot, the longest first.
pub fn entitlements(
    subscriptions: &[Subscription],
    promos: &[(PromoCode, Timestamp)],
    now: Timestamp,
) -> Vec<Entitlement> {
    let mut out = Vec::new();
    for subscription in subscriptions {
        let plan = Plan::from_name(&subscription.plan);
        if let Some(until) = subscription_until(subscription)
            && until > now
            && plan != Plan::Free
        {
            for _ in 0..subscription.slots.min(MAX_SLOTS) {
                out.push(Entitlement { plan, until });
            }
        }
    }
    for (promo, redeemed_at) in promos {
        let until =
            redeemed_at.saturating_add(Duration::from_secs(u64::from(promo.premium_days) * 86_400));
        if until > now {
            for _ in 0..promo.slots.min(MAX_SLOTS) {
                out.push(Entitlement {
                    plan: Plan::Premium,
                    until,
                });
            }
        }
    }
    out.sort_by_key(|e| std::cmp::Reverse((e.plan, e.until)));
    out.truncate(MAX_SLOTS as usize);
    out
}

/// Slots one user may hold, whatever they pay for: a bound on rows per user.
pub const MAX_SLOTS: u32 = 100;

/// The user's entitlements at `now`, read from the store.
pub async fn entitlements_of<S: BillingRepo + PremiumRepo + ?Sized>(
    store: &S,
    user_id: u64,
    now: Timestamp,
) -> Result<Vec<Entitlement>, StorageError> {
    let subscriptions = store.subscriptions_of_user(user_id).await?;
    let mut promos = Vec::new();
    for redemption in store.redemptions_of_user(user_id).await? {
        if let Some((promo, _)) = store.promo(&redemption.code).await? {
            promos.push((promo, redemption.at));
        }
    }
    Ok(entitlements(&subscriptions, &promos, now))
}

/// Matches the user's slots to their entitlements: the earliest assigned slots keep premium
/// with renewed dates, the ones beyond what is paid for are removed. Returns the slots kept.
pub async fn refresh_slots<S: BillingRepo + PremiumRepo + ?Sized>(
    store: &S,
    user_id: u64,
    now: Timestamp,
) -> Result<Vec<PremiumSlot>, StorageError> {
    let entitlements = entitlements_of(store, user_id, now).await?;
    let mut kept = Vec::new();
    for (index, slot) in store.slots_of_user(user_id).await?.into_iter().enumerate() {
        match entitlements.get(index) {
            Some(entitlement) => {
                let renewed = PremiumSlot {
                    plan: entitlement.plan,
                    until: entitlement.until,
                    ..slot.clone()
                };
                if renewed != slot {
                    store.put_slot(&renewed).await?;
                }
                kept.push(renewed);
            }
            None => {
                store.remove_slot(user_id, slot.guild_id).await?;
            }
        }
    }
    Ok(kept)
}

/// Why a slot could not be assigned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssignRefused {
    /// Every slot the user has is in use (or they have none).
    NoFreeSlot,
    /// Another user's premium already covers the guild.
    GuildTaken,
}

/// What [`PremiumRepo::add_slot`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SlotAdded {
    Added,
    /// Another user's live slot holds the guild.
    GuildTaken,
    /// The user holds more slots than the caller counted: a concurrent assignment won.
    SlotsChanged,
}

/// How many times [`assign_slot`] counts again after a concurrent assignment of the same
/// user's won; each lost race means one more slot is taken, so this is never reached for a
/// user with fewer slots.
const ASSIGN_TRIES: usize = 8;

/// Gives one of the user's free slots to `guild_id` (already checked: the user manages it).
/// Assigning a guild the user's slot already holds changes nothing. Concurrent assignments,
/// by the same user or by others, never give a user more slots than they are entitled to nor
/// a guild two holders: the store adds the slot only if the count it was checked against is
/// still true ([`PremiumRepo::add_slot`]).
pub async fn assign_slot<S: BillingRepo + PremiumRepo + ?Sized>(
    store: &S,
    user_id: u64,
    guild_id: u64,
    now: Timestamp,
) -> Result<Result<PremiumSlot, AssignRefused>, StorageError> {
    for _ in 0..ASSIGN_TRIES {
        let slots = refresh_slots(store, user_id, now).await?;
        let held = slots.iter().find(|slot| slot.guild_id == guild_id);
        if let Some(slot) = held
            && store.guild_slot(guild_id).await?.as_ref() == Some(slot)
        {
            return Ok(Ok(slot.clone()));
        }
        let entitlements = entitlements_of(store, user_id, now).await?;
        // A slot the user holds on this guild without holding the guild (an assignment that
        // stopped half-way) is claimed again, counted as one of theirs.
        let index = held.map_or(slots.len(), |_| slots.len() - 1);
        let Some(entitlement) = entitlements.get(index) else {
            return Ok(Err(AssignRefused::NoFreeSlot));
        };
        let slot = PremiumSlot {
            guild_id,
            user_id,
            assigned_at: now,
            plan: entitlement.plan,
            until: entitlement.until,
        };
        match store.add_slot(&slot, index).await? {
            SlotAdded::Added => return Ok(Ok(slot)),
            SlotAdded::GuildTaken => return Ok(Err(AssignRefused::GuildTaken)),
            SlotAdded::SlotsChanged => continue,
        }
    }
    Err(StorageError::Database(format!(
        "user {user_id}: too many concurrent premium assignments"
    )))
}
