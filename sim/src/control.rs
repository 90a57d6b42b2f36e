//! The simulator's own HTTP API under `/sim`: stats, the world, the ledger
//! (pageable), and commands that make things happen (messages, interactions,
//! closing a shard, gateway and REST faults, resetting the token).
//!
//! Every failure is a 4xx with `{"message": ...}`, never a panic or a plain
//! text rejection.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use crate::entitlements::StoreChange;
use crate::faults::Fault;
use crate::ledger::LedgerPage;
use crate::ratelimit::RestFault;
use crate::rest::{JsonReply, json_response};
use crate::state::{AppState, ComponentUse};
use crate::world::GuildInfo;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/sim/stats", get(stats))
        .route("/sim/guilds", get(guilds))
        .route("/sim/ledger", get(ledger))
        .route("/sim/messages", post(send_message))
        .route("/sim/interactions", post(send_interaction))
        .route("/sim/components", post(use_component))
        .route("/sim/modals", post(submit_modal))
        .route("/sim/shards/{shard}/close", post(close_shard))
        .route("/sim/shards/{shard}/faults", post(inject_fault))
        .route("/sim/rest/faults", post(inject_rest_fault))
        .route("/sim/token", post(set_token))
        .route("/sim/entitlements", post(subscribe))
        .route(
            "/sim/entitlements/{id}",
            axum::routing::patch(change_entitlement).delete(refund_entitlement),
        )
}

/// Handlers' result: every error is a JSON `{"message": ...}`.
type Reply = Result<Response, JsonReply>;

fn error(status: StatusCode, message: impl Into<String>) -> JsonReply {
    JsonReply {
        status,
        body: json!({"message": message.into()}),
    }
}

fn ok(body: &impl serde::Serialize) -> Reply {
    let value = serde_json::to_value(body)
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(json_response(StatusCode::OK, &value))
}

fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, JsonReply> {
    serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("malformed request body: {e}"),
        )
    })
}

fn parse_query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, JsonReply> {
    query
        .map(|Query(q)| q)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("malformed query: {e}")))
}

/// Ids as JSON numbers or as strings (Discord's own style, safe in JS).
fn id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Number(u64),
        Text(String),
    }
    match Id::deserialize(deserializer)? {
        Id::Number(n) => Ok(n),
        Id::Text(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

async fn stats(State(shared): State<AppState>) -> Reply {
    ok(&shared.stats())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GuildsQuery {
    limit: Option<usize>,
}

async fn guilds(
    State(shared): State<AppState>,
    query: Result<Query<GuildsQuery>, QueryRejection>,
) -> Reply {
    let limit = parse_query(query)?.limit.unwrap_or(usize::MAX);
    let guilds: Vec<GuildInfo> = shared
        .world
        .guilds()
        .iter()
        .take(limit)
        .map(|g| g.info())
        .collect();
    ok(&guilds)
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct LedgerQuery {
    after_dispatch: usize,
    after_gateway: usize,
    after_rest: usize,
    after_identify: usize,
    after_interaction: usize,
}

async fn ledger(
    State(shared): State<AppState>,
    query: Result<Query<LedgerQuery>, QueryRejection>,
) -> Reply {
    let q = parse_query(query)?;
    ok(&shared.ledger_snapshot(&LedgerPage {
        dispatch: q.after_dispatch,
        gateway: q.after_gateway,
        rest: q.after_rest,
        identify: q.after_identify,
        interaction: q.after_interaction,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageRequest {
    #[serde(deserialize_with = "id")]
    guild_id: u64,
    #[serde(deserialize_with = "id")]
    channel_id: u64,
    #[serde(deserialize_with = "id")]
    author_id: u64,
    content: String,
    /// File names to attach.
    #[serde(default)]
    attachments: Vec<String>,
}

async fn send_message(State(shared): State<AppState>, body: Bytes) -> Reply {
    let request: MessageRequest = parse_body(&body)?;
    check_target(&shared, request.guild_id, request.channel_id)?;
    let attachments: Vec<&str> = request.attachments.iter().map(String::as_str).collect();
    let id = shared
        .send_message(
            request.guild_id,
            request.channel_id,
            request.author_id,
            &request.content,
            &attachments,
        )
        .ok_or_else(|| no_session(&shared, request.guild_id))?;
    ok(&json!({"id": id}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InteractionRequest {
    #[serde(deserialize_with = "id")]
    guild_id: u64,
    #[serde(deserialize_with = "id")]
    channel_id: u64,
    #[serde(deserialize_with = "id")]
    user_id: u64,
    command: String,
    /// `[[name, value], ...]`, string options.
    #[serde(default)]
    options: Vec<(String, String)>,
}

async fn send_interaction(State(shared): State<AppState>, body: Bytes) -> Reply {
    let request: InteractionRequest = parse_body(&body)?;
    check_target(&shared, request.guild_id, request.channel_id)?;
    let options: Vec<(&str, &str)> = request
        .options
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let id = shared
        .send_command_interaction(
            request.guild_id,
            request.channel_id,
            request.user_id,
            &request.command,
            &options,
        )
        .ok_or_else(|| no_session(&shared, request.guild_id))?;
    ok(&json!({"id": id}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ComponentRequest {
    #[serde(deserialize_with = "id")]
    guild_id: u64,
    #[serde(deserialize_with = "id")]
    channel_id: u64,
    #[serde(deserialize_with = "id")]
    message_id: u64,
    #[serde(deserialize_with = "id")]
    user_id: u64,
    custom_id: String,
    /// The values chosen in a select; absent for a button.
    values: Option<Vec<String>>,
}

/// `POST /sim/components`: a member presses a button or chooses in a select of a message;
/// 404 for an unknown target, 403 when the member cannot see it, 400 for a component the
/// message lacks or values it does not take.
async fn use_component(State(shared): State<AppState>, body: Bytes) -> Reply {
    let request: ComponentRequest = parse_body(&body)?;
    let id = shared
        .use_component(&ComponentUse {
            guild_id: request.guild_id,
            channel_id: request.channel_id,
            message_id: request.message_id,
            user_id: request.user_id,
            custom_id: &request.custom_id,
            values: request.values.as_deref(),
        })
        .map_err(|(status, message)| error(status, message))?;
    ok(&json!({"id": id}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModalRequest {
    /// The interaction answered with the modal.
    #[serde(deserialize_with = "id")]
    interaction_id: u64,
    /// `[[custom_id, value], ...]` of its text inputs.
    #[serde(default)]
    values: Vec<(String, String)>,
}

/// `POST /sim/modals`: the member sends the modal an interaction was answered with; 404 if
/// none is open (never shown, or sent already), 400 for answers it does not take.
async fn submit_modal(State(shared): State<AppState>, body: Bytes) -> Reply {
    let request: ModalRequest = parse_body(&body)?;
    let id = shared
        .submit_modal(request.interaction_id, &request.values)
        .map_err(|(status, message)| error(status, message))?;
    ok(&json!({"id": id}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscribeRequest {
    #[serde(deserialize_with = "id")]
    user_id: u64,
    /// For a guild subscription.
    #[serde(default, deserialize_with = "optional_id")]
    guild_id: Option<u64>,
    #[serde(deserialize_with = "id")]
    sku_id: u64,
    /// The first period, in days.
    days: u64,
}

fn optional_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    id(deserializer).map(Some)
}

/// `POST /sim/entitlements`: a user buys an app subscription (ENTITLEMENT_CREATE follows);
/// 400 for an unknown SKU, guild or user.
async fn subscribe(State(shared): State<AppState>, body: Bytes) -> Reply {
    let request: SubscribeRequest = parse_body(&body)?;
    let id = shared
        .subscribe(
            request.user_id,
            request.guild_id,
            request.sku_id,
            request.days,
        )
        .map_err(|message| error(StatusCode::BAD_REQUEST, message))?;
    ok(&json!({"id": id.to_string()}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndsAtRequest {
    /// Unix ms the subscription now ends at (renewed, or cancelled at the period's end).
    ends_at_ms: u64,
}

fn entitlement_id(id: &str) -> Result<u64, JsonReply> {
    id.parse()
        .map_err(|_| error(StatusCode::NOT_FOUND, format!("unknown entitlement {id}")))
}

/// `PATCH /sim/entitlements/{id}`: the period changes (ENTITLEMENT_UPDATE follows).
async fn change_entitlement(
    State(shared): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Reply {
    let request: EndsAtRequest = parse_body(&body)?;
    let id = entitlement_id(&id)?;
    if !shared.change_entitlement(id, StoreChange::EndsAt(request.ends_at_ms)) {
        return Err(error(
            StatusCode::NOT_FOUND,
            format!("unknown entitlement {id}"),
        ));
    }
    ok(&json!({"id": id.to_string()}))
}

/// `DELETE /sim/entitlements/{id}`: Discord refunds it (ENTITLEMENT_DELETE follows).
async fn refund_entitlement(State(shared): State<AppState>, Path(id): Path<String>) -> Reply {
    let id = entitlement_id(&id)?;
    if !shared.change_entitlement(id, StoreChange::Refund) {
        return Err(error(
            StatusCode::NOT_FOUND,
            format!("unknown entitlement {id}"),
        ));
    }
    ok(&json!({"id": id.to_string()}))
}

/// 404 naming whichever of guild and channel is unknown.
fn check_target(shared: &AppState, guild_id: u64, channel_id: u64) -> Result<(), JsonReply> {
    let guild = shared
        .world
        .guild(guild_id)
        .ok_or_else(|| error(StatusCode::NOT_FOUND, format!("unknown guild {guild_id}")))?;
    if !shared.has_channel(guild, channel_id) {
        return Err(error(
            StatusCode::NOT_FOUND,
            format!("unknown channel {channel_id} in guild {guild_id}"),
        ));
    }
    Ok(())
}

/// 404, as for unknown ids: from the caller's side the target is not there.
fn no_session(shared: &AppState, guild_id: u64) -> JsonReply {
    let shard = shared.world.guild(guild_id).map_or(0, |g| g.shard);
    error(
        StatusCode::NOT_FOUND,
        format!(
            "nothing was sent: shard {shard} of guild {guild_id} has no session \
             (or its intents exclude the event)"
        ),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CloseRequest {
    code: u16,
}

fn parse_shard(shared: &AppState, shard: &str) -> Result<u32, JsonReply> {
    shard
        .parse::<u32>()
        .ok()
        .filter(|&s| s < shared.config.shards)
        .ok_or_else(|| error(StatusCode::NOT_FOUND, format!("unknown shard {shard}")))
}

/// 400 for a close code no websocket may carry, 409 when the fault needs a
/// live connection and there is none.
fn inject(shared: &AppState, shard: u32, fault: Fault) -> Result<(), JsonReply> {
    if let Fault::Close { code } = fault
        && !(1000..=4999).contains(&code)
    {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("close code {code} is outside 1000..=4999"),
        ));
    }
    if !shared.inject(shard, fault) {
        return Err(error(
            StatusCode::CONFLICT,
            format!("shard {shard} has no live connection"),
        ));
    }
    Ok(())
}

async fn close_shard(
    State(shared): State<AppState>,
    Path(shard): Path<String>,
    body: Bytes,
) -> Reply {
    let shard = parse_shard(&shared, &shard)?;
    let request: CloseRequest = parse_body(&body)?;
    inject(&shared, shard, Fault::Close { code: request.code })?;
    ok(&json!({"closed": true}))
}

/// `POST /sim/shards/{shard}/faults` with a [`Fault`] as JSON.
async fn inject_fault(
    State(shared): State<AppState>,
    Path(shard): Path<String>,
    body: Bytes,
) -> Reply {
    let shard = parse_shard(&shared, &shard)?;
    let fault: Fault = parse_body(&body)?;
    inject(&shared, shard, fault.clone())?;
    ok(&json!({"injected": fault}))
}

/// `POST /sim/rest/faults` with a [`RestFault`] as JSON.
async fn inject_rest_fault(State(shared): State<AppState>, body: Bytes) -> Reply {
    let fault: RestFault = parse_body(&body)?;
    if let Some(reason) = fault.invalid() {
        return Err(error(StatusCode::BAD_REQUEST, reason));
    }
    shared.rest_faults.push(fault.clone());
    ok(&json!({"injected": fault}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    token: String,
}

async fn set_token(State(shared): State<AppState>, body: Bytes) -> Reply {
    let request: TokenRequest = parse_body(&body)?;
    if request.token.is_empty() {
        return Err(error(StatusCode::BAD_REQUEST, "token must not be empty"));
    }
    shared.set_token(&request.token);
    ok(&Value::Object(serde_json::Map::new()))
}
