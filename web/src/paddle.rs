//! Paddle Billing webhooks: verified, stored, answered; applied later, in order.
//!
//! The endpoint checks `Paddle-Signature: ts=…;h1=…` (HMAC-SHA256 of `ts:raw body` with the
//! notification destination's secret) on the raw bytes before parsing anything, in constant
//! time, accepting any `h1` under any configured secret (during a rotation Paddle sends one
//! per secret, and we may hold the old and the new). A timestamp outside the tolerance is a
//! replay. A verified event is written to the durable inbox (deduplicated by `event_id`)
//! and answered 200 at once; [`spawn_processor`] applies the inbox per subscription in
//! `occurred_at` order, and the store refuses to let an older state overwrite a newer one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use protonn_storage::{
    InboxEvent, StorageError, Store, Subscription, SubscriptionStatus, Timestamp, refresh_slots,
};
use ring::hmac;
use serde::Deserialize;
use tokio::sync::Notify;

use crate::{AppState, Secret, metrics};

/// Largest webhook body: Paddle's subscription events are a few kilobytes.
pub(crate) const BODY_LIMIT: usize = 64 * 1024;
/// Events the processor takes from the inbox per round.
const BATCH: usize = 100;

/// The event types applied; anything else is refused (and Paddle sends only what the
/// notification destination subscribes to).
const SUBSCRIPTION_EVENTS: [&str; 8] = [
    "subscription.created",
    "subscription.updated",
    "subscription.trialing",
    "subscription.activated",
    "subscription.past_due",
    "subscription.paused",
    "subscription.resumed",
    "subscription.canceled",
];

/// The webhook endpoint's settings (`[web.paddle]`; the secrets from the environment or a
/// file, never the config file).
#[derive(Clone, Debug)]
pub struct PaddleConfig {
    /// Endpoint secrets (`pdl_ntfset_…`); several during a rotation. Never in `Debug`.
    pub secrets: Vec<Secret>,
    /// How far the signature's timestamp may be from our clock: older is a replay.
    pub tolerance: Duration,
    /// Paddle's hosted checkout link; the dashboard appends the user's id as `custom_data`.
    pub checkout_url: Option<String>,
}

impl PaddleConfig {
    pub fn new(secrets: Vec<Secret>) -> Self {
        Self {
            secrets,
            tolerance: Duration::from_secs(5),
            checkout_url: None,
        }
    }
}

/// Why a delivery was refused (or not stored again): the bounded `outcome` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    NotConfigured,
    TooLarge,
    BadSignature,
    Stale,
    Malformed,
    UnknownType,
    Store,
}

impl Refusal {
    pub(crate) const ALL: [Refusal; 7] = [
        Refusal::NotConfigured,
        Refusal::TooLarge,
        Refusal::BadSignature,
        Refusal::Stale,
        Refusal::Malformed,
        Refusal::UnknownType,
        Refusal::Store,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Refusal::NotConfigured => "not_configured",
            Refusal::TooLarge => "too_large",
            Refusal::BadSignature => "bad_signature",
            Refusal::Stale => "stale",
            Refusal::Malformed => "malformed",
            Refusal::UnknownType => "unknown_type",
            Refusal::Store => "store_error",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Refusal::NotConfigured => StatusCode::NOT_FOUND,
            Refusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::BadSignature | Refusal::Stale => StatusCode::UNAUTHORIZED,
            Refusal::Malformed => StatusCode::BAD_REQUEST,
            Refusal::UnknownType => StatusCode::UNPROCESSABLE_ENTITY,
            // Paddle retries: the event is not lost.
            Refusal::Store => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn message(self) -> &'static str {
        match self {
            Refusal::NotConfigured => "webhooks are not configured",
            Refusal::TooLarge => "body too large",
            Refusal::BadSignature => "bad or missing Paddle-Signature",
            Refusal::Stale => "signature timestamp outside the tolerance (replay?)",
            Refusal::Malformed => "malformed event",
            Refusal::UnknownType => "unknown event type",
            Refusal::Store => "could not store the event; retry",
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        metrics::paddle_webhook(self.label());
        (self.status(), self.message()).into_response()
    }
}

/// `POST /webhooks/paddle`.
pub(crate) async fn webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Refusal> {
    let (Some(config), Some(store)) = (&state.config.paddle, &state.premium) else {
        return Err(Refusal::NotConfigured);
    };
    let body = body.map_err(|_| Refusal::TooLarge)?;
    let signature = headers
        .get("paddle-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or(Refusal::BadSignature)?;
    verify(signature, &body, config, Timestamp::now())?;
    let event = parse_event(&body)?;
    let fresh = store.receive_event(&event).await.map_err(|err| {
        tracing::warn!(error = %err, "storing a Paddle event failed");
        Refusal::Store
    })?;
    state.billing_wakeup.notify_one();
    let outcome = if fresh { "received" } else { "duplicate" };
    metrics::paddle_webhook(outcome);
    Ok((StatusCode::OK, outcome).into_response())
}

/// Checks the signature header over the raw body at `now`.
pub(crate) fn verify(
    header: &str,
    body: &[u8],
    config: &PaddleConfig,
    now: Timestamp,
) -> Result<(), Refusal> {
    let mut ts = None;
    let mut signatures = Vec::new();
    for part in header.split(';') {
        match part.trim().split_once('=') {
            Some(("ts", value)) => ts = Some(value),
            Some(("h1", value)) => signatures.push(value),
            _ => {}
        }
    }
    let ts = ts.ok_or(Refusal::BadSignature)?;
    let seconds: u64 = ts.parse().map_err(|_| Refusal::BadSignature)?;
    if signatures.is_empty() || signatures.len() > 8 {
        return Err(Refusal::BadSignature);
    }
    let mut signed = Vec::with_capacity(ts.len() + 1 + body.len());
    signed.extend_from_slice(ts.as_bytes());
    signed.push(b':');
    signed.extend_from_slice(body);
    let mut valid = false;
    for secret in &config.secrets {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret.expose().as_bytes());
        for h1 in &signatures {
            if let Some(tag) = hex(h1) {
                // `verify` compares in constant time.
                valid |= hmac::verify(&key, &signed, &tag).is_ok();
            }
        }
    }
    if !valid {
        return Err(Refusal::BadSignature);
    }
    // Checked after the signature, so a forged timestamp is a bad signature, not a replay.
    let at_ms = seconds.saturating_mul(1_000);
    let tolerance = u64::try_from(config.tolerance.as_millis()).unwrap_or(u64::MAX);
    if at_ms.abs_diff(now.0) > tolerance {
        return Err(Refusal::Stale);
    }
    Ok(())
}

fn hex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The envelope every Paddle event has.
#[derive(Deserialize)]
struct Envelope {
    event_id: String,
    event_type: String,
    occurred_at: String,
    data: serde_json::Value,
}

fn parse_event(body: &[u8]) -> Result<InboxEvent, Refusal> {
    let text = std::str::from_utf8(body).map_err(|_| Refusal::Malformed)?;
    let envelope: Envelope = serde_json::from_str(text).map_err(|_| Refusal::Malformed)?;
    let occurred_at = Timestamp::parse_rfc3339(&envelope.occurred_at).ok_or(Refusal::Malformed)?;
    if envelope.event_id.is_empty() || envelope.event_id.len() > 100 {
        return Err(Refusal::Malformed);
    }
    if !SUBSCRIPTION_EVENTS.contains(&envelope.event_type.as_str()) {
        return Err(Refusal::UnknownType);
    }
    // Checked now so that the inbox holds only events the processor can apply.
    let subscription = PaddleSubscription::from_data(&envelope.data).ok_or(Refusal::Malformed)?;
    Ok(InboxEvent {
        event_id: envelope.event_id,
        event_type: envelope.event_type,
        occurred_at,
        received_at: Timestamp::now(),
        body: Some(text.to_owned()),
        outcome: None,
        // The body names the user (`custom_data`): indexed, so their rights reach it.
        user_id: Some(subscription.user_id),
    })
}

/// What we use of a Paddle subscription entity.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PaddleSubscription {
    id: String,
    user_id: u64,
    status: SubscriptionStatus,
    slots: u32,
    plan: String,
    period_end: Option<Timestamp>,
}

impl PaddleSubscription {
    fn from_data(data: &serde_json::Value) -> Option<Self> {
        let id = data.get("id")?.as_str()?.to_owned();
        let custom = data.get("custom_data")?;
        let user_id = match custom.get("user_id")? {
            serde_json::Value::String(text) => text.parse().ok()?,
            serde_json::Value::Number(n) => n.as_u64()?,
            _ => return None,
        };
        let status = match data.get("status")?.as_str()? {
            "trialing" => SubscriptionStatus::Trialing,
            "active" => SubscriptionStatus::Active,
            "past_due" => SubscriptionStatus::PastDue,
            "paused" => SubscriptionStatus::Paused,
            "canceled" => SubscriptionStatus::Cancelled,
            _ => return None,
        };
        let slots = data
            .get("items")
            .and_then(|items| items.as_array())
            .map(|items| {
                items
                    .iter()
                    .map(|item| item.get("quantity").and_then(|q| q.as_u64()).unwrap_or(1))
                    .sum::<u64>()
            })
            .unwrap_or(1);
        let plan = custom
            .get("plan")
            .and_then(|p| p.as_str())
            .unwrap_or("premium")
            .to_owned();
        let period_end = data
            .get("current_billing_period")
            .and_then(|p| p.get("ends_at"))
            .and_then(|t| t.as_str())
            .and_then(Timestamp::parse_rfc3339);
        Some(Self {
            id,
            user_id,
            status,
            slots: u32::try_from(slots).ok()?,
            plan,
            period_end,
        })
    }
}

/// Paddle's ids (`sub_…`) as the store's numeric subscription id: the first 8 bytes of a
/// SHA-256, so ids never collide in practice and the same id always maps the same way.
fn subscription_key(provider_id: &str) -> u64 {
    let digest = ring::digest::digest(&ring::digest::SHA256, provider_id.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest.as_ref()[..8]);
    u64::from_be_bytes(bytes)
}

/// Applies the inbox until the task is aborted: at once when the endpoint stores an event,
/// and every `every` (events left by a failed round, a restart).
pub fn spawn_processor(
    store: Arc<dyn Store>,
    wakeup: Arc<Notify>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Err(err) = process_inbox(store.as_ref(), Timestamp::now()).await {
                tracing::warn!(error = %err, "applying Paddle events failed; retrying");
            }
            let _ = tokio::time::timeout(every, wakeup.notified()).await;
        }
    })
}

/// One round: the pending events, per subscription in `occurred_at` order. Returns how
/// many were finished.
pub async fn process_inbox(store: &dyn Store, now: Timestamp) -> Result<usize, StorageError> {
    let mut by_subscription: BTreeMap<String, Vec<(InboxEvent, PaddleSubscription)>> =
        BTreeMap::new();
    let mut finished = 0;
    for event in store.pending_events(BATCH).await? {
        let parsed = event
            .body
            .as_deref()
            .and_then(|body| serde_json::from_str::<Envelope>(body).ok())
            .and_then(|envelope| PaddleSubscription::from_data(&envelope.data));
        match parsed {
            Some(sub) => by_subscription
                .entry(sub.id.clone())
                .or_default()
                .push((event, sub)),
            None => {
                store.finish_event(&event.event_id, "invalid").await?;
                metrics::paddle_event("invalid");
                finished += 1;
            }
        }
    }
    for (_, mut events) in by_subscription {
        events.sort_by(|a, b| {
            (a.0.occurred_at, &a.0.event_id).cmp(&(b.0.occurred_at, &b.0.event_id))
        });
        for (event, sub) in events {
            let key = subscription_key(&sub.id);
            let stored = store.subscription(key).await?;
            let status_since = match &stored {
                Some(old) if old.status == sub.status => old.status_since,
                _ => event.occurred_at,
            };
            let subscription = Subscription {
                subscription_id: key,
                user_id: sub.user_id,
                guild_id: None,
                plan: sub.plan.clone(),
                status: sub.status,
                current_period_end: sub.period_end.unwrap_or(event.occurred_at),
                updated_at: event.occurred_at,
                slots: sub.slots,
                provider_ref: sub.id.clone(),
                status_since,
            };
            let applied = store.apply_subscription(&subscription).await?;
            if applied {
                refresh_slots(store, sub.user_id, now).await?;
            }
            let outcome = if applied { "applied" } else { "stale" };
            store.finish_event(&event.event_id, outcome).await?;
            metrics::paddle_event(outcome);
            finished += 1;
        }
    }
    Ok(finished)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(secrets: &[&str]) -> PaddleConfig {
        PaddleConfig::new(secrets.iter().map(|s| Secret::new(*s)).collect())
    }

    fn sign(secret: &str, ts: u64, body: &[u8]) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
        let mut signed = format!("{ts}:").into_bytes();
        signed.extend_from_slice(body);
        hmac::sign(&key, &signed)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn signatures_are_checked_over_the_raw_body_with_any_current_secret() {
        let body = br#"{"event_id":"evt_1"}"#;
        let now = Timestamp(1_700_000_000_000);
        let ts = now.0 / 1_000;
        let good = format!("ts={ts};h1={}", sign("new", ts, body));
        assert_eq!(verify(&good, body, &config(&["new"]), now), Ok(()));
        // Rotation: Paddle sends one h1 per secret; we may hold the old and the new.
        let both = format!(
            "ts={ts};h1={};h1={}",
            sign("old", ts, body),
            sign("new", ts, body)
        );
        assert_eq!(verify(&both, body, &config(&["new"]), now), Ok(()));
        assert_eq!(verify(&good, body, &config(&["old", "new"]), now), Ok(()));
        // A changed byte, a wrong secret, a changed timestamp, garbage: refused.
        let tampered = br#"{"event_id":"evt_2"}"#;
        assert_eq!(
            verify(&good, tampered, &config(&["new"]), now),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            verify(&good, body, &config(&["other"]), now),
            Err(Refusal::BadSignature)
        );
        let moved = format!("ts={};h1={}", ts + 1, sign("new", ts, body));
        assert_eq!(
            verify(&moved, body, &config(&["new"]), now),
            Err(Refusal::BadSignature)
        );
        for header in ["", "ts=1", "h1=00", "ts=x;h1=zz", "nonsense"] {
            assert_eq!(
                verify(header, body, &config(&["new"]), now),
                Err(Refusal::BadSignature),
                "{header}"
            );
        }
        // A valid signature from too long ago (or ahead): a replay.
        let later = Timestamp(now.0 + 6_000);
        assert_eq!(
            verify(&good, body, &config(&["new"]), later),
            Err(Refusal::Stale)
        );
        assert_eq!(
            verify(&good, body, &config(&["new"]), Timestamp(now.0 + 4_000)),
            Ok(())
        );
    }

    #[test]
    fn timestamps_parse_as_paddle_writes_them() {
        assert_eq!(
            Timestamp::parse_rfc3339("1970-01-01T00:00:00Z"),
            Some(Timestamp(0))
        );
        assert_eq!(
            Timestamp::parse_rfc3339("2023-11-14T22:13:20.635628Z"),
            Some(Timestamp(1_700_000_000_635))
        );
        assert_eq!(
            Timestamp::parse_rfc3339("2024-02-29T12:00:00+00:00"),
            Some(Timestamp(1_709_208_000_000))
        );
        for bad in [
            "2024-02-29",
            "2024-13-01T00:00:00Z",
            "2024-01-01T00:00:00+02:00",
            "x",
        ] {
            assert_eq!(Timestamp::parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn events_need_a_known_type_and_a_subscription_with_its_user() {
        let event = |kind: &str, data: &str| {
            format!(
                r#"{{"event_id":"evt_1","event_type":"{kind}","occurred_at":"2024-01-01T00:00:00Z","data":{data}}}"#
            )
        };
        let data = r#"{"id":"sub_1","status":"active","custom_data":{"user_id":"42"},"items":[{"quantity":2}],"current_billing_period":{"ends_at":"2024-02-01T00:00:00Z"}}"#;
        let parsed = parse_event(event("subscription.activated", data).as_bytes()).unwrap();
        assert_eq!(parsed.event_id, "evt_1");
        assert_eq!(parsed.user_id, Some(42), "indexed by the user it names");
        assert_eq!(
            parsed.occurred_at,
            Timestamp::parse_rfc3339("2024-01-01T00:00:00Z").unwrap()
        );
        assert_eq!(
            parse_event(event("transaction.completed", data).as_bytes()),
            Err(Refusal::UnknownType)
        );
        let no_user = r#"{"id":"sub_1","status":"active","custom_data":{}}"#;
        assert_eq!(
            parse_event(event("subscription.updated", no_user).as_bytes()),
            Err(Refusal::Malformed)
        );
        assert_eq!(parse_event(b"{not json"), Err(Refusal::Malformed));
        let sub = PaddleSubscription::from_data(&serde_json::from_str(data).unwrap()).unwrap();
        assert_eq!((sub.user_id, sub.slots), (42, 2));
        assert_eq!(sub.status, SubscriptionStatus::Active);
    }
}
