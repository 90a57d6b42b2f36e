//! Discord app subscriptions as a source of premium: each entitlement to a SKU the operator
//! mapped to a plan (`RuntimeConfig::premium_skus`) is stored as a subscription of its user
//! (`provider_ref` `discord:<id>`), the same premium slots whatever the source; an
//! entitlement bought for a guild puts one of the buyer's slots on that guild.
//!
//! A purchase arrives as ENTITLEMENT_CREATE on shard 0. Renewals and refunds come as
//! ENTITLEMENT_UPDATE and ENTITLEMENT_DELETE, which twilight 0.18 cannot parse (its
//! dispatch deserialiser knows CREATE only), so the node holding shard 0 reads the
//! application's entitlements ([`reconcile`]) at shard 0's READY (catching up what no node
//! was there to get) and every `RuntimeConfig::entitlement_reconcile_every`.
//!
//! Entitlements carry no change time, and an event or a page may be older than what is
//! stored, so their order comes from their content: an entitlement only moves forward (its
//! `ends_at` grows as it renews; deletion, a refund, is final). A replayed or late one never
//! undoes a newer one ([`PremiumRepo::apply_subscription`] keeps the latest `updated_at`).

use std::collections::HashMap;

use metrics::counter;
use protonn_storage::{
    BillingRepo, Plan, PremiumRepo, StorageError, Subscription, SubscriptionStatus, Timestamp,
    assign_slot, refresh_slots,
};
use twilight_http::request::Request;
use twilight_http::routing::Route;
use twilight_model::application::monetization::Entitlement;
use twilight_model::id::Id;
use twilight_model::id::marker::ApplicationMarker;

use crate::metrics::ENTITLEMENTS;
use crate::replies::Replies;

/// What applying one entitlement did: the `outcome` label of
/// `protonn_premium_entitlements_total`.
pub(crate) const OUTCOMES: [&str; 5] = ["applied", "stale", "unknown_sku", "no_user", "error"];

/// Entitlements read per page at reconciliation (Discord's maximum).
const PAGE: u8 = 100;
/// Pages read at most at one reconciliation: a bound on a READY's work (100,000
/// entitlements); past it the rest wait for events or the next READY.
const MAX_PAGES: usize = 1_000;

/// The entitlement as a subscription, or why it is none of ours.
fn subscription_of(
    entitlement: &Entitlement,
    skus: &HashMap<u64, Plan>,
    now: Timestamp,
) -> Result<Subscription, &'static str> {
    let Some(plan) = skus.get(&entitlement.sku_id.get()) else {
        return Err("unknown_sku");
    };
    let Some(user) = entitlement.user_id else {
        // A test entitlement given to a guild: premium belongs to a user's slots here.
        return Err("no_user");
    };
    let ends = entitlement.ends_at.map(millis);
    let ended = entitlement.deleted || ends.is_some_and(|end| end <= now);
    Ok(Subscription {
        subscription_id: entitlement.id.get(),
        user_id: user.get(),
        guild_id: entitlement.guild_id.map(Id::get),
        plan: plan.name().to_owned(),
        status: if ended {
            SubscriptionStatus::Cancelled
        } else {
            SubscriptionStatus::Active
        },
        // A test entitlement has no end: it lasts until deleted.
        current_period_end: ends.unwrap_or(Timestamp(u64::MAX / 2)),
        updated_at: progress(entitlement),
        slots: 1,
        provider_ref: format!("discord:{}", entitlement.id),
        status_since: now,
    })
}

/// How far along its life an entitlement is: later `ends_at` (renewals), then deletion.
fn progress(entitlement: &Entitlement) -> Timestamp {
    if entitlement.deleted {
        return Timestamp(u64::MAX);
    }
    entitlement.ends_at.map_or(Timestamp(u64::MAX - 1), millis)
}

fn millis(at: twilight_model::util::Timestamp) -> Timestamp {
    Timestamp(u64::try_from(at.as_micros() / 1_000).unwrap_or(0))
}

/// Stores the entitlement's state (unless a newer one is stored), then matches its user's
/// slots to what they now pay for; an entitlement bought for a guild gets that guild a
/// slot. Counted by outcome (`error` when the store failed).
pub(crate) async fn apply<S: BillingRepo + PremiumRepo + ?Sized>(
    store: &S,
    skus: &HashMap<u64, Plan>,
    entitlement: &Entitlement,
    now: Timestamp,
) -> Result<&'static str, StorageError> {
    let outcome = store_entitlement(store, skus, entitlement, now).await;
    counter!(ENTITLEMENTS, "outcome" => *outcome.as_ref().unwrap_or(&"error")).increment(1);
    outcome
}

async fn store_entitlement<S: BillingRepo + PremiumRepo + ?Sized>(
    store: &S,
    skus: &HashMap<u64, Plan>,
    entitlement: &Entitlement,
    now: Timestamp,
) -> Result<&'static str, StorageError> {
    let subscription = match subscription_of(entitlement, skus, now) {
        Ok(subscription) => subscription,
        Err(outcome) => return Ok(outcome),
    };
    if !store.apply_subscription(&subscription).await? {
        return Ok("stale");
    }
    let user = subscription.user_id;
    refresh_slots(store, user, now).await?;
    if let Some(guild) = subscription.guild_id
        && subscription.status == SubscriptionStatus::Active
        && let Err(refused) = assign_slot(store, user, guild, now).await?
    {
        tracing::info!(
            guild_id = guild,
            ?refused,
            "a guild subscription's slot could not be put on its guild"
        );
    }
    Ok("applied")
}

/// [`apply`] on a task of its own; the router calls it and goes on.
pub(crate) fn spawn_apply(services: &crate::Services, entitlement: Entitlement) {
    let store = std::sync::Arc::clone(&services.store);
    let skus = std::sync::Arc::clone(&services.runtime.premium_skus);
    services.spawn(async move {
        if let Err(err) = apply(store.as_ref(), &skus, &entitlement, Timestamp::now()).await {
            tracing::warn!(entitlement_id = %entitlement.id, error = %err, "cannot store an entitlement; the next reading of the list catches it up");
        }
    });
}

/// Reads every entitlement of the application, deleted ones included (a refund while no
/// node listened), and applies each: what events were missed is caught up. The number
/// applied (not stale).
pub(crate) async fn reconcile<S: BillingRepo + PremiumRepo + ?Sized>(
    store: &S,
    replies: &Replies,
    application_id: Id<ApplicationMarker>,
    skus: &HashMap<u64, Plan>,
) -> Result<usize, String> {
    let mut applied = 0;
    let mut after = None;
    for _ in 0..MAX_PAGES {
        // Built from the route: twilight 0.18's `exclude_deleted` builder sets
        // `exclude_ended` instead.
        let request = Request::from_route(&Route::GetEntitlements {
            after,
            application_id: application_id.get(),
            before: None,
            exclude_deleted: Some(false),
            exclude_ended: Some(true),
            guild_id: None,
            limit: Some(PAGE),
            sku_ids: &[],
            user_id: None,
        });
        let page: Vec<Entitlement> = replies
            .rest()
            .send("entitlements", request)
            .await
            .map_err(|err| err.to_string())?
            .model()
            .map_err(|err| err.to_string())?;
        for entitlement in &page {
            let outcome = apply(store, skus, entitlement, Timestamp::now())
                .await
                .map_err(|err| err.to_string())?;
            applied += usize::from(outcome == "applied");
        }
        match page.iter().map(|e| e.id).max() {
            Some(last) if page.len() == usize::from(PAGE) => after = Some(last.get()),
            _ => return Ok(applied),
        }
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entitlement(json: &str) -> Entitlement {
        serde_json::from_str(json).expect("an entitlement")
    }

    const SUB: &str = r#"{"id":"10","sku_id":"7","application_id":"1","user_id":"5","guild_id":"9","type":8,"deleted":false,"starts_at":"2026-01-01T00:00:00+00:00","ends_at":"2026-02-01T00:00:00+00:00"}"#;

    #[test]
    fn a_renewal_or_a_refund_is_later_than_what_it_follows_whatever_the_delivery_order() {
        let first = entitlement(SUB);
        let renewed = entitlement(&SUB.replace("2026-02-01", "2026-03-01"));
        let refunded = entitlement(&SUB.replace("\"deleted\":false", "\"deleted\":true"));
        assert!(progress(&renewed) > progress(&first));
        assert!(progress(&refunded) > progress(&renewed));
    }

    #[test]
    fn only_mapped_skus_with_a_user_become_subscriptions() {
        let skus = HashMap::from([(7, Plan::Premium)]);
        let now = Timestamp::parse_rfc3339("2026-01-15T00:00:00Z").unwrap();
        let sub = subscription_of(&entitlement(SUB), &skus, now).expect("ours");
        assert_eq!(
            (sub.user_id, sub.guild_id, sub.status),
            (5, Some(9), SubscriptionStatus::Active)
        );
        assert_eq!(sub.provider_ref, "discord:10");
        let ended = Timestamp::parse_rfc3339("2026-03-01T00:00:00Z").unwrap();
        assert_eq!(
            subscription_of(&entitlement(SUB), &skus, ended)
                .unwrap()
                .status,
            SubscriptionStatus::Cancelled
        );
        assert_eq!(
            subscription_of(&entitlement(SUB), &HashMap::new(), now).unwrap_err(),
            "unknown_sku"
        );
        let guild_only = SUB.replace("\"user_id\":\"5\",", "");
        assert_eq!(
            subscription_of(&entitlement(&guild_only), &skus, now).unwrap_err(),
            "no_user"
        );
    }
}
