//! Discord app subscriptions: the application's SKUs, the entitlements users and guilds hold,
//! the REST routes a bot uses (`GET /applications/{app}/skus`, list and get entitlements,
//! create and delete test entitlements) and the gateway events that follow each change
//! (ENTITLEMENT_CREATE, ENTITLEMENT_UPDATE, ENTITLEMENT_DELETE).
//!
//! Purchases are the store's side, driven by the control API (`/sim/entitlements`): a user
//! subscribes (an entitlement of type 8, `APPLICATION_SUBSCRIPTION`, with `starts_at` and
//! `ends_at`), the period is renewed or ends (ENTITLEMENT_UPDATE with the new `ends_at`), or
//! Discord refunds it (ENTITLEMENT_DELETE, `deleted: true`). A test entitlement (type 4,
//! `TEST_MODE_PURCHASE`) has no dates and may be deleted by the bot.
//!
//! Discord does not document which shard gets entitlement events: they carry no `guild_id`
//! for routing, so the simulator sends them to shard 0, as it does DMs.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::moderation::{body_object, invalid, no_content, not_found};
use crate::rest::{Outcome, RequestBody, json_error, json_response};
use crate::session::Event;
use crate::snowflake::{IdGenerator, now_unix_ms, rfc3339, snowflake, unix_ms_of};
use crate::state::Shared;

/// Entitlement types the simulator issues.
const APPLICATION_SUBSCRIPTION: u64 = 8;
const TEST_MODE_PURCHASE: u64 = 4;
/// A test entitlement's owner: a guild (1) or a user (2).
const OWNER_GUILD: u64 = 1;
const OWNER_USER: u64 = 2;
/// Discord's page bound for the entitlement list.
const LIST_LIMIT_MAX: usize = 100;
/// The worker bits of entitlement and SKU ids (the world, messages and interactions use
/// others).
const WORKER_ENTITLEMENT: u64 = 10;
const WORKER_SKU: u64 = 11;

/// The application's SKUs: a guild subscription and a user subscription, made a day after
/// the application, so their ids are stable for a world.
pub(crate) fn skus(application_id: u64) -> [u64; 2] {
    let made = unix_ms_of(application_id) + 86_400_000;
    [
        snowflake(made, WORKER_SKU, 1),
        snowflake(made, WORKER_SKU, 2),
    ]
}

/// One entitlement as the store keeps it.
#[derive(Clone, Debug)]
pub(crate) struct Entitlement {
    pub(crate) id: u64,
    pub(crate) sku_id: u64,
    pub(crate) user_id: Option<u64>,
    pub(crate) guild_id: Option<u64>,
    kind: u64,
    /// Unix ms; `None` for a test entitlement.
    starts_ms: Option<u64>,
    pub(crate) ends_ms: Option<u64>,
    pub(crate) deleted: bool,
}

impl Entitlement {
    fn json(&self, application_id: u64) -> Value {
        let mut object = json!({
            "id": self.id.to_string(),
            "sku_id": self.sku_id.to_string(),
            "application_id": application_id.to_string(),
            "type": self.kind,
            "deleted": self.deleted,
            "consumed": false,
        });
        let fields = object.as_object_mut().expect("an object");
        if let Some(user) = self.user_id {
            fields.insert("user_id".into(), user.to_string().into());
        }
        if let Some(guild) = self.guild_id {
            fields.insert("guild_id".into(), guild.to_string().into());
        }
        if let Some(ms) = self.starts_ms {
            fields.insert("starts_at".into(), rfc3339(ms).into());
        }
        if let Some(ms) = self.ends_ms {
            fields.insert("ends_at".into(), rfc3339(ms).into());
        }
        object
    }

    fn ended(&self, now_ms: u64) -> bool {
        self.ends_ms.is_some_and(|end| end <= now_ms)
    }
}

/// Every entitlement of the application, by id.
#[derive(Debug)]
pub(crate) struct EntitlementState {
    rows: Mutex<BTreeMap<u64, Entitlement>>,
    ids: IdGenerator,
}

impl Default for EntitlementState {
    fn default() -> Self {
        Self {
            rows: Mutex::new(BTreeMap::new()),
            ids: IdGenerator::new(WORKER_ENTITLEMENT),
        }
    }
}

impl EntitlementState {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Entitlement>> {
        self.rows.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the store may change of an entitlement.
#[derive(Clone, Copy, Debug)]
pub(crate) enum StoreChange {
    /// The subscription now ends at this Unix ms (renewed, or cancelled at period end).
    EndsAt(u64),
    /// Refunded: deleted, as Discord does.
    Refund,
}

impl Shared {
    /// A user subscribes to `sku_id` for `days` (for a guild if `guild_id`): the entitlement's
    /// id, or why not (an unknown SKU, guild or user).
    pub(crate) fn subscribe(
        &self,
        user_id: u64,
        guild_id: Option<u64>,
        sku_id: u64,
        days: u64,
    ) -> Result<u64, String> {
        if !skus(self.world.bot.application_id).contains(&sku_id) {
            return Err(format!("unknown SKU {sku_id}"));
        }
        if let Some(guild) = guild_id
            && self.world.guild(guild).is_none()
        {
            return Err(format!("unknown guild {guild}"));
        }
        if user_id == 0 {
            return Err("unknown user 0".into());
        }
        let now = now_unix_ms();
        let entitlement = Entitlement {
            id: self.entitlements.ids.next(),
            sku_id,
            user_id: Some(user_id),
            guild_id,
            kind: APPLICATION_SUBSCRIPTION,
            starts_ms: Some(now),
            ends_ms: Some(now + days * 86_400_000),
            deleted: false,
        };
        let id = entitlement.id;
        self.entitlements.lock().insert(id, entitlement.clone());
        self.emit_entitlement("ENTITLEMENT_CREATE", &entitlement);
        Ok(id)
    }

    /// The store changes an entitlement; `false` if there is none (or it was refunded).
    pub(crate) fn change_entitlement(&self, id: u64, change: StoreChange) -> bool {
        let changed = {
            let mut rows = self.entitlements.lock();
            let Some(row) = rows.get_mut(&id).filter(|row| !row.deleted) else {
                return false;
            };
            match change {
                StoreChange::EndsAt(ms) => row.ends_ms = Some(ms),
                StoreChange::Refund => row.deleted = true,
            }
            row.clone()
        };
        let name = match change {
            StoreChange::EndsAt(_) => "ENTITLEMENT_UPDATE",
            StoreChange::Refund => "ENTITLEMENT_DELETE",
        };
        self.emit_entitlement(name, &changed);
        true
    }

    fn emit_entitlement(&self, name: &'static str, entitlement: &Entitlement) {
        let d = entitlement.json(self.world.bot.application_id).to_string();
        self.sessions.dispatch(
            0,
            Event {
                name,
                guild_id: None,
                entity_id: Some(entitlement.id),
                d,
            },
        );
    }
}

/// The application of an `/applications/{app}/…` path must be the bot's.
fn check_application(shared: &Shared, segments: &[&str]) -> Result<(), Box<Outcome>> {
    if segments.get(1).and_then(|id| id.parse::<u64>().ok())
        == Some(shared.world.bot.application_id)
    {
        return Ok(());
    }
    Err(Box::new(Outcome::new(
        "",
        json_error(StatusCode::FORBIDDEN, "Missing Access", 50001),
    )))
}

/// `GET /applications/{app}/skus`.
pub(crate) fn list_skus(shared: &Shared, segments: &[&str], _: &RequestBody) -> Outcome {
    if let Err(outcome) = check_application(shared, segments) {
        return *outcome;
    }
    let application_id = shared.world.bot.application_id;
    let [guild_sku, user_sku] = skus(application_id);
    let sku = |id: u64, name: &str, flags: u64| {
        json!({
            "id": id.to_string(),
            "type": 5, // SUBSCRIPTION
            "application_id": application_id.to_string(),
            "name": name,
            "slug": name.to_lowercase().replace(' ', "-"),
            "flags": flags,
        })
    };
    let body = json!([
        // GUILD_SUBSCRIPTION (1 << 7) and USER_SUBSCRIPTION (1 << 8), both AVAILABLE (1 << 2).
        sku(guild_sku, "Server Premium", (1 << 2) | (1 << 7)),
        sku(user_sku, "Premium", (1 << 2) | (1 << 8)),
    ]);
    Outcome::new("", json_response(StatusCode::OK, &body))
}

/// What the entitlement list asks for.
#[derive(Debug, Default)]
struct ListQuery {
    user_id: Option<u64>,
    guild_id: Option<u64>,
    sku_ids: Vec<u64>,
    before: Option<u64>,
    after: Option<u64>,
    limit: Option<usize>,
    exclude_ended: bool,
    exclude_deleted: Option<bool>,
}

fn list_query(query: Option<&str>) -> Result<ListQuery, Box<Outcome>> {
    let mut out = ListQuery::default();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let snowflake = |value: &str| {
            value.parse::<u64>().map_err(|_| {
                Box::new(invalid(
                    key,
                    "NUMBER_TYPE_COERCE",
                    &format!("Value \"{value}\" is not snowflake."),
                ))
            })
        };
        let boolean = || match value {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(Box::new(invalid(
                key,
                "BOOLEAN_TYPE_COERCE",
                &format!("Value \"{value}\" is not a boolean."),
            ))),
        };
        match key {
            "user_id" => out.user_id = Some(snowflake(value)?),
            "guild_id" => out.guild_id = Some(snowflake(value)?),
            "before" => out.before = Some(snowflake(value)?),
            "after" => out.after = Some(snowflake(value)?),
            "sku_ids" => {
                for id in value.split(',').filter(|id| !id.is_empty()) {
                    out.sku_ids.push(snowflake(id)?);
                }
            }
            "limit" => match value.parse::<usize>() {
                Ok(n) if (1..=LIST_LIMIT_MAX).contains(&n) => out.limit = Some(n),
                _ => {
                    return Err(Box::new(invalid(
                        "limit",
                        "NUMBER_TYPE_MAX",
                        "int value should be between 1 and 100.",
                    )));
                }
            },
            "exclude_ended" => out.exclude_ended = boolean()?,
            "exclude_deleted" => out.exclude_deleted = Some(boolean()?),
            // Discord ignores query parameters it does not know.
            _ => {}
        }
    }
    Ok(out)
}

/// `GET /applications/{app}/entitlements`: filtered, by id ascending; `before` gives the
/// page just below it, `after` the one just above (as Discord's lists page).
pub(crate) fn list_entitlements(
    shared: &Shared,
    segments: &[&str],
    query: Option<&str>,
) -> Outcome {
    if let Err(outcome) = check_application(shared, segments) {
        return *outcome;
    }
    let query = match list_query(query) {
        Ok(query) => query,
        Err(outcome) => return *outcome,
    };
    let now = now_unix_ms();
    let limit = query.limit.unwrap_or(LIST_LIMIT_MAX);
    let rows = shared.entitlements.lock();
    let matching = rows.values().filter(|row| {
        query.user_id.is_none_or(|user| row.user_id == Some(user))
            && query
                .guild_id
                .is_none_or(|guild| row.guild_id == Some(guild))
            && (query.sku_ids.is_empty() || query.sku_ids.contains(&row.sku_id))
            && !(query.exclude_ended && row.ended(now))
            && !(query.exclude_deleted.unwrap_or(true) && row.deleted)
            && query.after.is_none_or(|after| row.id > after)
            && query.before.is_none_or(|before| row.id < before)
    });
    let page: Vec<&Entitlement> = if query.before.is_some() && query.after.is_none() {
        let below: Vec<&Entitlement> = matching.collect();
        below[below.len().saturating_sub(limit)..].to_vec()
    } else {
        matching.take(limit).collect()
    };
    let application_id = shared.world.bot.application_id;
    let body: Vec<Value> = page.iter().map(|row| row.json(application_id)).collect();
    Outcome::new("", json_response(StatusCode::OK, &Value::Array(body)))
}

fn entitlement_id(segments: &[&str]) -> Option<u64> {
    segments.get(3).and_then(|id| id.parse::<u64>().ok())
}

fn unknown_entitlement() -> Outcome {
    not_found("Unknown Entitlement", 10029)
}

/// `GET /applications/{app}/entitlements/{id}`.
pub(crate) fn get_entitlement(shared: &Shared, segments: &[&str], _: &RequestBody) -> Outcome {
    if let Err(outcome) = check_application(shared, segments) {
        return *outcome;
    }
    let rows = shared.entitlements.lock();
    match entitlement_id(segments).and_then(|id| rows.get(&id)) {
        Some(row) => Outcome::new(
            "",
            json_response(StatusCode::OK, &row.json(shared.world.bot.application_id)),
        ),
        None => unknown_entitlement(),
    }
}

/// `POST /applications/{app}/entitlements`: a test entitlement for a guild the bot is in or
/// a user, to a SKU of the application.
pub(crate) fn create_test_entitlement(
    shared: &Shared,
    segments: &[&str],
    body: &RequestBody,
) -> Outcome {
    if let Err(outcome) = check_application(shared, segments) {
        return *outcome;
    }
    let Some(fields) = body_object(body) else {
        return invalid("_", "DICT_TYPE_CONVERT", "Only dictionaries may be used.");
    };
    let snowflake = |name: &str| {
        fields.get(name).and_then(|v| {
            v.as_str()
                .and_then(|s| s.parse::<u64>().ok())
                .or(v.as_u64())
        })
    };
    let Some(sku_id) = snowflake("sku_id") else {
        return invalid("sku_id", "BASE_TYPE_REQUIRED", "This field is required");
    };
    let Some(owner_id) = snowflake("owner_id") else {
        return invalid("owner_id", "BASE_TYPE_REQUIRED", "This field is required");
    };
    if !skus(shared.world.bot.application_id).contains(&sku_id) {
        return not_found("Unknown SKU", 10027);
    }
    let (user_id, guild_id) = match fields.get("owner_type").and_then(Value::as_u64) {
        Some(OWNER_GUILD) => {
            if shared.world.guild(owner_id).is_none() {
                return not_found("Unknown Guild", 10004);
            }
            (None, Some(owner_id))
        }
        Some(OWNER_USER) => (Some(owner_id), None),
        _ => {
            return invalid(
                "owner_type",
                "BASE_TYPE_CHOICES",
                "Value must be one of (1, 2).",
            );
        }
    };
    let entitlement = Entitlement {
        id: shared.entitlements.ids.next(),
        sku_id,
        user_id,
        guild_id,
        kind: TEST_MODE_PURCHASE,
        starts_ms: None,
        ends_ms: None,
        deleted: false,
    };
    shared
        .entitlements
        .lock()
        .insert(entitlement.id, entitlement.clone());
    shared.emit_entitlement("ENTITLEMENT_CREATE", &entitlement);
    let body = entitlement.json(shared.world.bot.application_id);
    Outcome::new("", json_response(StatusCode::OK, &body))
}

/// `DELETE /applications/{app}/entitlements/{id}`: only a test entitlement.
pub(crate) fn delete_test_entitlement(
    shared: &Shared,
    segments: &[&str],
    _: &RequestBody,
) -> Outcome {
    if let Err(outcome) = check_application(shared, segments) {
        return *outcome;
    }
    let deleted = {
        let mut rows = shared.entitlements.lock();
        let Some(row) = entitlement_id(segments)
            .and_then(|id| rows.get_mut(&id))
            .filter(|row| !row.deleted)
        else {
            return unknown_entitlement();
        };
        if row.kind != TEST_MODE_PURCHASE {
            return Outcome::new(
                "",
                json_error(
                    StatusCode::BAD_REQUEST,
                    "Only test entitlements can be deleted",
                    50_035,
                ),
            );
        }
        row.deleted = true;
        row.clone()
    };
    shared.emit_entitlement("ENTITLEMENT_DELETE", &deleted);
    no_content()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_query_reads_what_twilight_sends_and_refuses_bad_values() {
        let Ok(query) = list_query(Some("&exclude_ended=true&limit=5&sku_ids=1,2&user_id=9"))
        else {
            panic!("what twilight sends is valid");
        };
        assert_eq!(query.user_id, Some(9));
        assert_eq!(query.sku_ids, vec![1, 2]);
        assert_eq!(query.limit, Some(5));
        assert!(query.exclude_ended);
        assert!(list_query(Some("limit=101")).is_err());
        assert!(list_query(Some("limit=0")).is_err());
        assert!(list_query(Some("user_id=me")).is_err());
        assert!(list_query(Some("exclude_ended=yes")).is_err());
    }

    #[test]
    fn skus_are_stable_and_distinct() {
        let [a, b] = skus(1_000_000_000_000_000);
        assert_ne!(a, b);
        assert_eq!(skus(1_000_000_000_000_000), [a, b]);
    }
}
