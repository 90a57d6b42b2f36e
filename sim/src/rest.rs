//! REST API v10 under `/api/v10`: the routes a bot built on twilight-http
//! uses, with Discord's status codes and error bodies.
//!
//! Routing is by hand over path segments rather than by axum routes, so every
//! request — matched or not, authorized or not — passes one place that
//! records it in the ledger with its status. Known routes pass the rate
//! limiter and scripted faults (`ratelimit`) first.

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use crate::automod;
use crate::ban;
use crate::channels;
use crate::entitlements;
use crate::interactions::{Answer, InteractionKind, Issue};
use crate::ledger::RestRecord;
use crate::moderation;
use crate::payloads::{self, Author, MessageSpec};
use crate::ratelimit::{self, Caller, LimitClass, Limited, RestFaultResponse, RouteKey};
use crate::state::{AppState, Shared};
use crate::threads;
use crate::world::Guild;

/// Path prefix twilight-http uses with a proxy.
pub(crate) const PREFIX: &str = "/api/v10";

/// Discord's message content limit.
const MAX_CONTENT_CHARS: usize = 2000;
/// Discord's embed count limit.
const MAX_EMBEDS: usize = 10;
/// Commands one bulk overwrite may carry.
const MAX_COMMANDS: usize = 100;

/// A JSON response with `content-type: application/json` exactly (twilight
/// checks it) and no `content-encoding` (twilight would try to decode).
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Discord's error body: `{"message": ..., "code": ...}`.
pub(crate) fn json_error(status: StatusCode, message: &str, code: u32) -> Response {
    json_response(status, &json!({"message": message, "code": code}))
}

/// A JSON reply not yet turned into a [`Response`]: small enough to be the
/// error side of a `Result`, and a response itself.
#[derive(Debug)]
pub(crate) struct JsonReply {
    pub(crate) status: StatusCode,
    pub(crate) body: Value,
}

impl IntoResponse for JsonReply {
    fn into_response(self) -> Response {
        json_response(self.status, &self.body)
    }
}

fn empty(status: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}

/// A handled request: the response and what the ledger needs to know.
pub(crate) struct Outcome {
    route: &'static str,
    response: Response,
    /// A successful bot reply (counted in `SimStats::replies`).
    reply: bool,
}

impl Outcome {
    pub(crate) fn new(route: &'static str, response: Response) -> Self {
        Self {
            route,
            response,
            reply: false,
        }
    }
}

/// The request body: absent, JSON, or something that failed to parse.
pub(crate) enum RequestBody {
    Empty,
    Json(Value),
    Malformed,
}

pub(crate) async fn handle(
    State(shared): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = shared.clock.now();
    let path = uri.path().strip_prefix(PREFIX).unwrap_or(uri.path());
    let body = if body.is_empty() {
        RequestBody::Empty
    } else {
        serde_json::from_slice(&body).map_or(RequestBody::Malformed, RequestBody::Json)
    };
    let authorized = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| shared.token_matches(v));
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let mut record = RestRecord {
        method: method.to_string(),
        path: path.to_owned(),
        route: String::new(),
        status: 0,
        body: None,
        at_ms: shared.clock.ms_at(now),
        bucket: None,
        rate_limit_scope: None,
        injected: false,
        invalid: false,
        banned: false,
    };
    let known = limited_route(&method, &segments);
    let outcome = if let Some(left) = shared.invalid_requests.banned(now) {
        // The ban stands in front of everything, as Cloudflare does.
        record.banned = true;
        let route = known.as_ref().map_or("unknown", |(key, _)| key.route);
        Outcome::new(route, ban::banned_response(left))
    } else {
        match known {
            // Unknown routes and 401s carry no rate limit headers.
            Some((key, needs_auth)) if authorized || !needs_auth => {
                let caller = if authorized {
                    Caller::Bot
                } else {
                    Caller::Ip(peer.ip())
                };
                limited(&shared, &key, now, caller, &mut record, || {
                    route(&shared, &method, &segments, uri.query(), authorized, &body)
                })
            }
            _ => route(&shared, &method, &segments, uri.query(), authorized, &body),
        }
    };
    record.route = outcome.route.to_owned();
    record.status = outcome.response.status().as_u16();
    if !record.banned && ban::counts_as_invalid(record.status, record.rate_limit_scope) {
        record.invalid = true;
        if shared.invalid_requests.record(now) {
            tracing::warn!("invalid-request limit reached: REST is banned");
        }
    }
    record.body = match body {
        RequestBody::Json(value) => Some(value),
        RequestBody::Empty | RequestBody::Malformed => None,
    };
    shared.ledger.record_rest(record, outcome.reply);
    outcome.response
}

/// Serves a rate-limited route: a scripted fault if one is due, else a
/// random one if drawn, else a 429 if a limit refuses it, else `serve` with
/// the bucket's headers added.
fn limited(
    shared: &Shared,
    key: &RouteKey,
    now: Instant,
    caller: Caller,
    record: &mut RestRecord,
    serve: impl FnOnce() -> Outcome,
) -> Outcome {
    let refused = |record: &mut RestRecord, limited: &Limited| {
        record.rate_limit_scope = Some(limited.scope);
        record.bucket = limited.bucket.as_ref().map(|b| b.bucket.clone());
        Outcome::new(key.route, ratelimit::too_many_requests(limited))
    };
    let fault = shared
        .rest_faults
        .take(key.route)
        .or_else(|| shared.random_rest_faults.draw());
    if let Some(fault) = fault {
        record.injected = true;
        return match fault {
            RestFaultResponse::RateLimited {
                scope,
                retry_after_ms,
            } => {
                let retry_after = Duration::from_millis(retry_after_ms);
                let limited = shared.rate_limiter.scripted(key, scope, retry_after);
                refused(record, &limited)
            }
            RestFaultResponse::ServerError { status } => {
                Outcome::new(key.route, ratelimit::server_error(status))
            }
        };
    }
    match shared.rate_limiter.check(key, now, caller) {
        Ok(state) => {
            let mut outcome = serve();
            ratelimit::apply_headers(outcome.response.headers_mut(), &state, None);
            record.bucket = Some(state.bucket);
            outcome
        }
        Err(limited) => refused(record, &limited),
    }
}

/// The bucket of a known route and whether it needs the bot token; `None`
/// for unknown routes.
fn limited_route(method: &Method, segments: &[&str]) -> Option<(RouteKey, bool)> {
    let key = |route, class, major: &str| RouteKey {
        route,
        class,
        major: major.to_owned(),
    };
    let found = match (method.as_str(), segments) {
        ("POST", ["interactions", id, _, "callback"]) => {
            (key(CALLBACK_ROUTE, LimitClass::Interactions, id), false)
        }
        ("PATCH", ["webhooks", _, token, "messages", "@original"]) => (
            key(EDIT_ORIGINAL_ROUTE, LimitClass::Interactions, token),
            false,
        ),
        ("POST", ["webhooks", _, token]) => {
            (key(FOLLOWUP_ROUTE, LimitClass::Interactions, token), false)
        }
        ("GET", ["gateway"]) => (key("GET /gateway", LimitClass::Other, ""), false),
        ("POST", ["channels", channel, "messages"]) => (
            key(CREATE_MESSAGE_ROUTE, LimitClass::ChannelMessages, channel),
            true,
        ),
        ("GET", ["gateway", "bot"]) => (key("GET /gateway/bot", LimitClass::Other, ""), true),
        ("GET", ["users", "@me"]) => (key("GET /users/@me", LimitClass::Other, ""), true),
        ("GET", ["applications", "@me"]) => {
            (key("GET /applications/@me", LimitClass::Other, ""), true)
        }
        ("PUT", ["applications", _, "commands"]) => {
            (key(GLOBAL_COMMANDS_ROUTE, LimitClass::Other, ""), true)
        }
        ("PUT", ["applications", _, "guilds", guild, "commands"]) => {
            (key(GUILD_COMMANDS_ROUTE, LimitClass::Other, guild), true)
        }
        ("GET", ["guilds", guild, "members", _]) => {
            (key(GUILD_MEMBER_ROUTE, LimitClass::Other, guild), true)
        }
        ("GET", ["guilds", guild, "channels"]) => {
            (key(GUILD_CHANNELS_ROUTE, LimitClass::Other, guild), true)
        }
        ("PUT", ["guilds", guild, "bans", _]) => {
            (key(BAN_PUT_ROUTE, LimitClass::Other, guild), true)
        }
        ("DELETE", ["guilds", guild, "bans", _]) => {
            (key(BAN_DELETE_ROUTE, LimitClass::Other, guild), true)
        }
        ("GET", ["guilds", guild, "bans", _]) => {
            (key(BAN_GET_ROUTE, LimitClass::Other, guild), true)
        }
        ("PATCH", ["guilds", guild, "members", _]) => {
            (key(MEMBER_PATCH_ROUTE, LimitClass::Other, guild), true)
        }
        ("DELETE", ["guilds", guild, "members", _]) => {
            (key(MEMBER_DELETE_ROUTE, LimitClass::Other, guild), true)
        }
        ("GET", ["channels", channel, "messages"]) => {
            (key(MESSAGES_GET_ROUTE, LimitClass::Other, channel), true)
        }
        ("DELETE", ["channels", channel, "messages", _]) => {
            (key(MESSAGE_DELETE_ROUTE, LimitClass::Other, channel), true)
        }
        ("POST", ["channels", channel, "messages", "bulk-delete"]) => {
            (key(BULK_DELETE_ROUTE, LimitClass::Other, channel), true)
        }
        ("GET", ["channels", channel]) => {
            (key(CHANNEL_GET_ROUTE, LimitClass::Other, channel), true)
        }
        ("PATCH", ["channels", channel]) => {
            (key(CHANNEL_PATCH_ROUTE, LimitClass::Other, channel), true)
        }
        ("PUT", ["channels", channel, "permissions", _]) => {
            (key(OVERWRITE_PUT_ROUTE, LimitClass::Other, channel), true)
        }
        ("DELETE", ["channels", channel, "permissions", _]) => (
            key(OVERWRITE_DELETE_ROUTE, LimitClass::Other, channel),
            true,
        ),
        ("DELETE", ["channels", channel]) => {
            (key(CHANNEL_DELETE_ROUTE, LimitClass::Other, channel), true)
        }
        ("POST", ["guilds", guild, "channels"]) => (
            key(GUILD_CHANNEL_CREATE_ROUTE, LimitClass::Other, guild),
            true,
        ),
        ("POST", ["channels", channel, "threads"]) => {
            (key(THREAD_CREATE_ROUTE, LimitClass::Other, channel), true)
        }
        ("POST", ["channels", channel, "messages", _, "threads"]) => (
            key(THREAD_FROM_MESSAGE_ROUTE, LimitClass::Other, channel),
            true,
        ),
        ("PUT", ["channels", channel, "thread-members", _]) => (
            key(THREAD_MEMBER_PUT_ROUTE, LimitClass::Other, channel),
            true,
        ),
        ("DELETE", ["channels", channel, "thread-members", _]) => (
            key(THREAD_MEMBER_DELETE_ROUTE, LimitClass::Other, channel),
            true,
        ),
        ("GET", ["channels", channel, "thread-members"]) => (
            key(THREAD_MEMBERS_GET_ROUTE, LimitClass::Other, channel),
            true,
        ),
        ("POST", ["users", "@me", "channels"]) => {
            (key(DM_CREATE_ROUTE, LimitClass::Other, ""), true)
        }
        ("GET", ["applications", _, "skus"]) => (key(SKUS_ROUTE, LimitClass::Other, ""), true),
        ("GET", ["guilds", guild, "auto-moderation", "rules"]) => {
            (key(AUTOMOD_RULES_ROUTE, LimitClass::Other, guild), true)
        }
        ("POST", ["guilds", guild, "auto-moderation", "rules"]) => (
            key(AUTOMOD_RULE_CREATE_ROUTE, LimitClass::Other, guild),
            true,
        ),
        ("GET", ["guilds", guild, "auto-moderation", "rules", _]) => {
            (key(AUTOMOD_RULE_GET_ROUTE, LimitClass::Other, guild), true)
        }
        ("PATCH", ["guilds", guild, "auto-moderation", "rules", _]) => (
            key(AUTOMOD_RULE_PATCH_ROUTE, LimitClass::Other, guild),
            true,
        ),
        ("DELETE", ["guilds", guild, "auto-moderation", "rules", _]) => (
            key(AUTOMOD_RULE_DELETE_ROUTE, LimitClass::Other, guild),
            true,
        ),
        ("GET", ["applications", _, "entitlements"]) => {
            (key(ENTITLEMENTS_ROUTE, LimitClass::Other, ""), true)
        }
        ("POST", ["applications", _, "entitlements"]) => (
            key(TEST_ENTITLEMENT_CREATE_ROUTE, LimitClass::Other, ""),
            true,
        ),
        ("GET", ["applications", _, "entitlements", _]) => {
            (key(ENTITLEMENT_GET_ROUTE, LimitClass::Other, ""), true)
        }
        ("DELETE", ["applications", _, "entitlements", _]) => (
            key(TEST_ENTITLEMENT_DELETE_ROUTE, LimitClass::Other, ""),
            true,
        ),
        _ => return None,
    };
    Some(found)
}

const CALLBACK_ROUTE: &str = "POST /interactions/{interaction_id}/{interaction_token}/callback";
const EDIT_ORIGINAL_ROUTE: &str =
    "PATCH /webhooks/{application_id}/{interaction_token}/messages/@original";
const FOLLOWUP_ROUTE: &str = "POST /webhooks/{application_id}/{interaction_token}";
const CREATE_MESSAGE_ROUTE: &str = "POST /channels/{channel_id}/messages";
const GLOBAL_COMMANDS_ROUTE: &str = "PUT /applications/{application_id}/commands";
const GUILD_COMMANDS_ROUTE: &str = "PUT /applications/{application_id}/guilds/{guild_id}/commands";
const GUILD_MEMBER_ROUTE: &str = "GET /guilds/{guild_id}/members/{user_id}";
const GUILD_CHANNELS_ROUTE: &str = "GET /guilds/{guild_id}/channels";
const BAN_PUT_ROUTE: &str = "PUT /guilds/{guild_id}/bans/{user_id}";
const BAN_DELETE_ROUTE: &str = "DELETE /guilds/{guild_id}/bans/{user_id}";
const BAN_GET_ROUTE: &str = "GET /guilds/{guild_id}/bans/{user_id}";
const MEMBER_PATCH_ROUTE: &str = "PATCH /guilds/{guild_id}/members/{user_id}";
const MEMBER_DELETE_ROUTE: &str = "DELETE /guilds/{guild_id}/members/{user_id}";
const MESSAGES_GET_ROUTE: &str = "GET /channels/{channel_id}/messages";
const MESSAGE_DELETE_ROUTE: &str = "DELETE /channels/{channel_id}/messages/{message_id}";
const BULK_DELETE_ROUTE: &str = "POST /channels/{channel_id}/messages/bulk-delete";
const CHANNEL_GET_ROUTE: &str = "GET /channels/{channel_id}";
const CHANNEL_PATCH_ROUTE: &str = "PATCH /channels/{channel_id}";
const OVERWRITE_PUT_ROUTE: &str = "PUT /channels/{channel_id}/permissions/{overwrite_id}";
const OVERWRITE_DELETE_ROUTE: &str = "DELETE /channels/{channel_id}/permissions/{overwrite_id}";
const CHANNEL_DELETE_ROUTE: &str = "DELETE /channels/{channel_id}";
const GUILD_CHANNEL_CREATE_ROUTE: &str = "POST /guilds/{guild_id}/channels";
const DM_CREATE_ROUTE: &str = "POST /users/@me/channels";
const THREAD_CREATE_ROUTE: &str = "POST /channels/{channel_id}/threads";
const THREAD_FROM_MESSAGE_ROUTE: &str = "POST /channels/{channel_id}/messages/{message_id}/threads";
const THREAD_MEMBER_PUT_ROUTE: &str = "PUT /channels/{channel_id}/thread-members/{user_id}";
const THREAD_MEMBER_DELETE_ROUTE: &str = "DELETE /channels/{channel_id}/thread-members/{user_id}";
const THREAD_MEMBERS_GET_ROUTE: &str = "GET /channels/{channel_id}/thread-members";
const AUTOMOD_RULES_ROUTE: &str = "GET /guilds/{guild_id}/auto-moderation/rules";
const AUTOMOD_RULE_CREATE_ROUTE: &str = "POST /guilds/{guild_id}/auto-moderation/rules";
const AUTOMOD_RULE_GET_ROUTE: &str = "GET /guilds/{guild_id}/auto-moderation/rules/{rule_id}";
const AUTOMOD_RULE_PATCH_ROUTE: &str = "PATCH /guilds/{guild_id}/auto-moderation/rules/{rule_id}";
const AUTOMOD_RULE_DELETE_ROUTE: &str = "DELETE /guilds/{guild_id}/auto-moderation/rules/{rule_id}";
const SKUS_ROUTE: &str = "GET /applications/{application_id}/skus";
const ENTITLEMENTS_ROUTE: &str = "GET /applications/{application_id}/entitlements";
const ENTITLEMENT_GET_ROUTE: &str =
    "GET /applications/{application_id}/entitlements/{entitlement_id}";
const TEST_ENTITLEMENT_CREATE_ROUTE: &str = "POST /applications/{application_id}/entitlements";
const TEST_ENTITLEMENT_DELETE_ROUTE: &str =
    "DELETE /applications/{application_id}/entitlements/{entitlement_id}";

fn unauthorized() -> Response {
    json_error(StatusCode::UNAUTHORIZED, "401: Unauthorized", 0)
}

/// A route that needs the bot token.
type Handler = fn(&Shared, &[&str], &RequestBody) -> Outcome;

fn route(
    shared: &Shared,
    method: &Method,
    segments: &[&str],
    query: Option<&str>,
    authorized: bool,
    body: &RequestBody,
) -> Outcome {
    // Routes that authenticate by the interaction token in the path, as
    // Discord's webhook routes do, take no Authorization header.
    match (method.as_str(), segments) {
        ("POST", ["interactions", id, token, "callback"]) => {
            return interaction_callback(shared, id, token, query, body);
        }
        ("PATCH", ["webhooks", app, token, "messages", "@original"]) => {
            return webhook_message(shared, EDIT_ORIGINAL_ROUTE, app, token, body);
        }
        ("POST", ["webhooks", app, token]) => {
            return webhook_message(shared, FOLLOWUP_ROUTE, app, token, body);
        }
        ("GET", ["gateway"]) => {
            return Outcome::new(
                "GET /gateway",
                json_response(StatusCode::OK, &json!({"url": shared.gateway_url()})),
            );
        }
        _ => {}
    }
    let (route, handler): (&'static str, Handler) = match (method.as_str(), segments) {
        ("GET", ["gateway", "bot"]) => ("GET /gateway/bot", gateway_bot),
        ("GET", ["users", "@me"]) => ("GET /users/@me", current_user),
        ("GET", ["applications", "@me"]) => ("GET /applications/@me", current_application),
        ("POST", ["channels", _, "messages"]) => (CREATE_MESSAGE_ROUTE, create_message),
        ("PUT", ["applications", _, "commands"]) => (GLOBAL_COMMANDS_ROUTE, overwrite_commands),
        ("PUT", ["applications", _, "guilds", _, "commands"]) => {
            (GUILD_COMMANDS_ROUTE, overwrite_commands)
        }
        ("GET", ["guilds", _, "members", _]) => (GUILD_MEMBER_ROUTE, guild_member),
        ("GET", ["guilds", _, "channels"]) => (GUILD_CHANNELS_ROUTE, guild_channels),
        ("PUT", ["guilds", _, "bans", _]) => (BAN_PUT_ROUTE, moderation::create_ban),
        ("DELETE", ["guilds", _, "bans", _]) => (BAN_DELETE_ROUTE, moderation::delete_ban),
        ("GET", ["guilds", _, "bans", _]) => (BAN_GET_ROUTE, moderation::get_ban),
        ("PATCH", ["guilds", _, "members", _]) => (MEMBER_PATCH_ROUTE, moderation::update_member),
        ("DELETE", ["guilds", _, "members", _]) => (MEMBER_DELETE_ROUTE, moderation::remove_member),
        // The routes that read the query (pagination).
        ("GET", ["channels", _, "messages"]) if authorized => {
            let mut outcome = moderation::channel_messages(shared, segments, query);
            outcome.route = MESSAGES_GET_ROUTE;
            return outcome;
        }
        ("GET", ["channels", _, "messages"]) => {
            return Outcome::new(MESSAGES_GET_ROUTE, unauthorized());
        }
        ("GET", ["applications", _, "entitlements"]) if authorized => {
            let mut outcome = entitlements::list_entitlements(shared, segments, query);
            outcome.route = ENTITLEMENTS_ROUTE;
            return outcome;
        }
        ("GET", ["applications", _, "entitlements"]) => {
            return Outcome::new(ENTITLEMENTS_ROUTE, unauthorized());
        }
        ("GET", ["applications", _, "skus"]) => (SKUS_ROUTE, entitlements::list_skus),
        ("GET", ["guilds", _, "auto-moderation", "rules"]) => {
            (AUTOMOD_RULES_ROUTE, automod::list_rules)
        }
        ("POST", ["guilds", _, "auto-moderation", "rules"]) => {
            (AUTOMOD_RULE_CREATE_ROUTE, automod::create_rule)
        }
        ("GET", ["guilds", _, "auto-moderation", "rules", _]) => {
            (AUTOMOD_RULE_GET_ROUTE, automod::get_rule)
        }
        ("PATCH", ["guilds", _, "auto-moderation", "rules", _]) => {
            (AUTOMOD_RULE_PATCH_ROUTE, automod::modify_rule)
        }
        ("DELETE", ["guilds", _, "auto-moderation", "rules", _]) => {
            (AUTOMOD_RULE_DELETE_ROUTE, automod::delete_rule)
        }
        ("POST", ["applications", _, "entitlements"]) => (
            TEST_ENTITLEMENT_CREATE_ROUTE,
            entitlements::create_test_entitlement,
        ),
        ("GET", ["applications", _, "entitlements", _]) => {
            (ENTITLEMENT_GET_ROUTE, entitlements::get_entitlement)
        }
        ("DELETE", ["applications", _, "entitlements", _]) => (
            TEST_ENTITLEMENT_DELETE_ROUTE,
            entitlements::delete_test_entitlement,
        ),
        ("DELETE", ["channels", _, "messages", _]) => {
            (MESSAGE_DELETE_ROUTE, moderation::delete_message)
        }
        ("POST", ["channels", _, "messages", "bulk-delete"]) => {
            (BULK_DELETE_ROUTE, moderation::bulk_delete)
        }
        ("GET", ["channels", _]) => (CHANNEL_GET_ROUTE, channels::get_channel),
        ("PATCH", ["channels", _]) => (CHANNEL_PATCH_ROUTE, channels::update_channel),
        ("DELETE", ["channels", _]) => (CHANNEL_DELETE_ROUTE, channels::delete_channel),
        ("PUT", ["channels", _, "permissions", _]) => {
            (OVERWRITE_PUT_ROUTE, channels::put_overwrite)
        }
        ("DELETE", ["channels", _, "permissions", _]) => {
            (OVERWRITE_DELETE_ROUTE, channels::delete_overwrite)
        }
        ("POST", ["guilds", _, "channels"]) => {
            (GUILD_CHANNEL_CREATE_ROUTE, channels::create_channel)
        }
        ("POST", ["users", "@me", "channels"]) => (DM_CREATE_ROUTE, moderation::create_dm),
        ("POST", ["channels", _, "threads"]) => (THREAD_CREATE_ROUTE, threads::create_thread),
        ("POST", ["channels", _, "messages", _, "threads"]) => (
            THREAD_FROM_MESSAGE_ROUTE,
            threads::create_thread_from_message,
        ),
        ("PUT", ["channels", _, "thread-members", _]) => {
            (THREAD_MEMBER_PUT_ROUTE, threads::add_member)
        }
        ("DELETE", ["channels", _, "thread-members", _]) => {
            (THREAD_MEMBER_DELETE_ROUTE, threads::remove_member)
        }
        ("GET", ["channels", _, "thread-members"]) => {
            (THREAD_MEMBERS_GET_ROUTE, threads::list_members)
        }
        _ => {
            return Outcome::new(
                "unknown",
                json_error(StatusCode::NOT_FOUND, "404: Not Found", 0),
            );
        }
    };
    if !authorized {
        return Outcome::new(route, unauthorized());
    }
    let mut outcome = handler(shared, segments, body);
    outcome.route = route;
    outcome
}

fn gateway_bot(shared: &Shared, _: &[&str], _: &RequestBody) -> Outcome {
    let config = &shared.config;
    let body = payloads::gateway_bot(
        &shared.gateway_url(),
        config.shards,
        config.session_start_total,
        shared.session_starts_remaining(),
        shared.session_window_reset_after(),
        config.max_concurrency,
    );
    Outcome::new("", json_response(StatusCode::OK, &body))
}

fn current_user(shared: &Shared, _: &[&str], _: &RequestBody) -> Outcome {
    let body = payloads::current_user(&shared.world.bot);
    Outcome::new("", json_response(StatusCode::OK, &body))
}

/// The guild of a `/guilds/{guild_id}/…` path, while the bot is in it.
fn bot_guild<'a>(shared: &'a Shared, segments: &[&str]) -> Option<&'a Guild> {
    segments
        .get(1)
        .and_then(|id| id.parse::<u64>().ok())
        .and_then(|id| shared.world.guild(id))
        .filter(|guild| !shared.world.is_removed(guild))
}

fn unknown_guild() -> Outcome {
    Outcome::new(
        "",
        json_error(StatusCode::NOT_FOUND, "Unknown Guild", 10004),
    )
}

fn guild_member(shared: &Shared, segments: &[&str], _: &RequestBody) -> Outcome {
    let Some(guild) = bot_guild(shared, segments) else {
        return unknown_guild();
    };
    let member = segments
        .get(3)
        .and_then(|id| id.parse::<u64>().ok())
        .filter(|&id| !shared.moderation.departed(guild.id, id))
        .and_then(|id| payloads::guild_member(&shared.world, guild, id));
    match member {
        Some(member) => Outcome::new("", json_response(StatusCode::OK, &member)),
        None => Outcome::new(
            "",
            json_error(StatusCode::NOT_FOUND, "Unknown Member", 10007),
        ),
    }
}

fn guild_channels(shared: &Shared, segments: &[&str], _: &RequestBody) -> Outcome {
    match bot_guild(shared, segments) {
        Some(guild) => Outcome::new(
            "",
            json_response(StatusCode::OK, &channels::guild_channels(shared, guild)),
        ),
        None => unknown_guild(),
    }
}

fn current_application(shared: &Shared, _: &[&str], _: &RequestBody) -> Outcome {
    let body = payloads::application(&shared.world.bot);
    Outcome::new("", json_response(StatusCode::OK, &body))
}

/// Bulk overwrite of the application's global or guild commands: validated as Discord
/// does, answered with the stored commands (ids, version, application).
fn overwrite_commands(shared: &Shared, segments: &[&str], body: &RequestBody) -> Outcome {
    let bot = &shared.world.bot;
    if segments[1].parse::<u64>().ok() != Some(bot.application_id) {
        return Outcome::new(
            "",
            json_error(StatusCode::FORBIDDEN, "Missing Access", 50001),
        );
    }
    let guild_id = match segments.get(3).map(|id| id.parse::<u64>()) {
        None => None,
        Some(Ok(id)) if shared.world.guild(id).is_some() => Some(id),
        Some(_) => {
            return Outcome::new(
                "",
                json_error(StatusCode::NOT_FOUND, "Unknown Guild", 10004),
            );
        }
    };
    let RequestBody::Json(Value::Array(commands)) = body else {
        return Outcome::new(
            "",
            invalid_form_body(
                "_root",
                "LIST_TYPE_CONVERT",
                "Only iterables may be used in a ListType",
            )
            .into_response(),
        );
    };
    if commands.len() > MAX_COMMANDS {
        return Outcome::new(
            "",
            invalid_form_body(
                "_root",
                "BASE_TYPE_MAX_LENGTH",
                "Must be 100 or fewer in length.",
            )
            .into_response(),
        );
    }
    let mut stored = Vec::with_capacity(commands.len());
    for (index, command) in commands.iter().enumerate() {
        let name = command
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let description = command
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let name_ok = (1..=32).contains(&name.chars().count())
            && name
                .chars()
                .all(|c| c == '-' || c == '_' || c.is_lowercase() || c.is_numeric());
        if !name_ok {
            let field = format!("{index}.name");
            let reply = invalid_form_body(
                &field,
                "APPLICATION_COMMAND_INVALID_NAME",
                "Command name is invalid",
            );
            return Outcome::new("", reply.into_response());
        }
        if !(1..=100).contains(&description.chars().count()) {
            let field = format!("{index}.description");
            let reply = invalid_form_body(
                &field,
                "BASE_TYPE_BAD_LENGTH",
                "Must be between 1 and 100 in length.",
            );
            return Outcome::new("", reply.into_response());
        }
        let mut command = command.clone();
        let id = crate::state::command_id(bot.application_id, name);
        command["id"] = json!(id.to_string());
        command["application_id"] = json!(bot.application_id.to_string());
        command["version"] = json!(id.to_string());
        command["guild_id"] = guild_id.map_or(Value::Null, |id| json!(id.to_string()));
        command["type"] = command.get("type").cloned().unwrap_or(json!(1));
        stored.push(command);
    }
    Outcome::new("", json_response(StatusCode::OK, &Value::Array(stored)))
}

fn invalid_form_body(field: &str, code: &str, message: &str) -> JsonReply {
    JsonReply {
        status: StatusCode::BAD_REQUEST,
        body: json!({
            "message": "Invalid Form Body",
            "code": 50035,
            "errors": {field: {"_errors": [{"code": code, "message": message}]}},
        }),
    }
}

/// A message body Discord accepted: what to echo and keep.
pub(crate) struct CheckedMessage {
    pub(crate) content: String,
    pub(crate) embeds: Value,
    /// Action rows, `Null` when the body had none.
    pub(crate) components: Value,
    /// `flags` has EPHEMERAL (only the interaction's user sees it; kept nowhere).
    pub(crate) ephemeral: bool,
}

/// Discord's EPHEMERAL message flag.
const EPHEMERAL: u64 = 1 << 6;

/// Checks a message body as Discord does: content of at most 2000 chars,
/// at most 10 embeds, valid components (`components.rs`), and (unless
/// `edit`: an edit may clear fields) not empty overall.
fn check_message_body(body: &RequestBody, edit: bool) -> Result<CheckedMessage, JsonReply> {
    match body {
        RequestBody::Json(value) => check_message(value, edit),
        _ => check_message(&Value::Null, edit),
    }
}

fn check_message(value: &Value, edit: bool) -> Result<CheckedMessage, JsonReply> {
    let Value::Object(map) = value else {
        return Err(invalid_form_body(
            "_root",
            "DICT_TYPE_CONVERT",
            "Only dictionaries may be used in a DictType",
        ));
    };
    let content = match map.get("content") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(invalid_form_body(
                "content",
                "BASE_TYPE_STRING",
                "Must be a string.",
            ));
        }
    };
    if content.chars().count() > MAX_CONTENT_CHARS {
        return Err(invalid_form_body(
            "content",
            "BASE_TYPE_MAX_LENGTH",
            "Must be 2000 or fewer in length.",
        ));
    }
    let embeds = match map.get("embeds") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(embeds)) if embeds.len() <= MAX_EMBEDS => embeds.clone(),
        Some(_) => {
            return Err(invalid_form_body(
                "embeds",
                "BASE_TYPE_MAX_LENGTH",
                "Must be 10 or fewer in length.",
            ));
        }
    };
    let components = map.get("components").cloned().unwrap_or(Value::Null);
    crate::components::check_message_components(&components)?;
    let has_other = ["components", "sticker_ids", "attachments", "poll"]
        .iter()
        .any(|k| map.get(*k).is_some_and(|v| !v.is_null()));
    if !edit && content.trim().is_empty() && embeds.is_empty() && !has_other {
        // Discord's own answer to an empty message.
        return Err(JsonReply {
            status: StatusCode::BAD_REQUEST,
            body: json!({"message": "Cannot send an empty message", "code": 50006}),
        });
    }
    let flags = map.get("flags").and_then(Value::as_u64).unwrap_or(0);
    Ok(CheckedMessage {
        content,
        embeds: Value::Array(embeds),
        components,
        ephemeral: flags & EPHEMERAL != 0,
    })
}

fn create_message(shared: &Shared, segments: &[&str], body: &RequestBody) -> Outcome {
    let channel_id = segments.get(1).and_then(|id| id.parse::<u64>().ok());
    let guild = channel_id.and_then(|id| shared.guild_of_channel(id).map(|g| (id, g)));
    let (channel_id, guild) = match (guild, channel_id) {
        (Some((channel_id, guild)), _) => (channel_id, Some(guild)),
        // A DM the bot opened (`POST /users/@me/channels`).
        (None, Some(channel_id)) if shared.moderation.is_dm_channel(channel_id) => {
            (channel_id, None)
        }
        _ => {
            return Outcome::new(
                "",
                json_error(StatusCode::NOT_FOUND, "Unknown Channel", 10003),
            );
        }
    };
    let message = match check_message_body(body, false) {
        Ok(checked) => checked,
        Err(reply) => return Outcome::new("", reply.into_response()),
    };
    let thread = shared.threads.get(channel_id);
    if let Some(thread) = &thread
        && let Err(outcome) = crate::threads::check_postable(thread)
    {
        return *outcome;
    }
    if shared
        .channels
        .get(channel_id)
        .is_some_and(|c| c.kind == channels::GUILD_CATEGORY)
    {
        return threads::wrong_channel_type();
    }
    let message_id = post_as_bot(shared, channel_id, &message);
    if let (Some(guild), Some(_)) = (guild, thread) {
        crate::threads::after_post(shared, guild, channel_id);
    }
    let bot = &shared.world.bot;
    let mut body = payloads::message(&MessageSpec {
        message_id,
        channel_id,
        // REST message objects carry no guild_id; only the gateway adds it.
        guild_id: None,
        author: Author {
            id: bot.user_id,
            username: &bot.username,
            joined_ms: guild.map_or(0, |g| g.bot_joined_ms),
            bot: true,
        },
        member_roles: None,
        content: &message.content,
        embeds: message.embeds,
        webhook_id: None,
        application_id: None,
    });
    if !message.components.is_null() {
        body["components"] = message.components;
    }
    Outcome {
        route: "",
        response: json_response(StatusCode::OK, &body),
        reply: true,
    }
}

/// Keeps a message the bot posted in a channel (with its components); its id.
fn post_as_bot(shared: &Shared, channel_id: u64, message: &CheckedMessage) -> u64 {
    let bot = &shared.world.bot;
    let message_id = shared.new_message_id();
    shared.moderation.keep(
        channel_id,
        moderation::Stored {
            id: message_id,
            author_id: bot.user_id,
            username: bot.username.clone(),
            bot: true,
            content: message.content.clone(),
            components: message.components.clone(),
            attachments: Vec::new(),
            edited_ms: None,
        },
    );
    message_id
}

/// Interaction callback types.
const CHANNEL_MESSAGE: u64 = 4;
const DEFERRED_CHANNEL_MESSAGE: u64 = 5;
const DEFERRED_UPDATE_MESSAGE: u64 = 6;
const UPDATE_MESSAGE: u64 = 7;
const MODAL: u64 = 9;

/// A callback body Discord accepted for the interaction it answers.
struct Callback {
    kind: u64,
    /// The message of types 4 and 7.
    message: Option<CheckedMessage>,
    /// The modal of type 9.
    modal: Option<Value>,
}

/// Checks a callback as Discord does: a type the interaction allows (updating a message
/// only for a component, or a modal sent from one; no modal in answer to a modal), and its
/// `data` (a message for 4 and 7, a modal for 9). A refused callback acknowledges nothing.
fn check_callback(issue: &Issue, body: &RequestBody) -> Result<Callback, JsonReply> {
    let RequestBody::Json(Value::Object(map)) = body else {
        return Err(invalid_form_body(
            "_root",
            "DICT_TYPE_CONVERT",
            "Only dictionaries may be used in a DictType",
        ));
    };
    let kind = map.get("type").and_then(Value::as_u64).unwrap_or(0);
    let on_message = issue.kind == InteractionKind::Component
        || (issue.kind == InteractionKind::ModalSubmit && issue.message_id.is_some());
    let allowed = match kind {
        CHANNEL_MESSAGE | DEFERRED_CHANNEL_MESSAGE => true,
        DEFERRED_UPDATE_MESSAGE | UPDATE_MESSAGE => on_message,
        MODAL => issue.kind != InteractionKind::ModalSubmit,
        _ => false,
    };
    if !allowed {
        return Err(invalid_form_body(
            "type",
            "INTERACTION_RESPONSE_TYPE_INVALID",
            "Interaction response type is invalid for this interaction.",
        ));
    }
    let data = map.get("data").unwrap_or(&Value::Null);
    let mut callback = Callback {
        kind,
        message: None,
        modal: None,
    };
    match kind {
        CHANNEL_MESSAGE => callback.message = Some(check_message(data, false)?),
        UPDATE_MESSAGE => callback.message = Some(check_message(data, true)?),
        MODAL => {
            crate::components::check_modal(data)?;
            callback.modal = Some(data.clone());
        }
        _ => {}
    }
    Ok(callback)
}

/// What an accepted callback changes: a type 4 message is posted in the channel (unless
/// ephemeral), a type 7 update edits the component's message, a modal waits for the
/// member.
fn apply_callback(shared: &Shared, id: u64, issue: &Issue, callback: Callback) {
    match (callback.kind, callback.message) {
        (CHANNEL_MESSAGE, Some(message)) if !message.ephemeral => {
            post_as_bot(shared, issue.channel_id, &message);
            if let Some(guild) = shared.guild_of_channel(issue.channel_id)
                && shared.threads.contains(issue.channel_id)
            {
                crate::threads::after_post(shared, guild, issue.channel_id);
            }
        }
        (UPDATE_MESSAGE, Some(message)) => {
            if let Some(message_id) = issue.message_id {
                shared
                    .moderation
                    .edit(issue.channel_id, message_id, |kept| {
                        kept.content = message.content;
                        if !message.components.is_null() {
                            kept.components = message.components;
                        }
                        kept.edited_ms = Some(crate::snowflake::now_unix_ms());
                    });
            }
        }
        _ => {}
    }
    shared
        .interactions
        .responded(id, callback.kind as u8, callback.modal);
}

fn interaction_callback(
    shared: &Shared,
    id: &str,
    token: &str,
    query: Option<&str>,
    body: &RequestBody,
) -> Outcome {
    let route = CALLBACK_ROUTE;
    let id = id.parse::<u64>().ok();
    let issue = id.and_then(|id| shared.interactions.lookup(id, token));
    let mut callback = None;
    if let Some(issue) = &issue {
        match check_callback(issue, body) {
            Ok(checked) => callback = Some(checked),
            Err(reply) => return Outcome::new(route, reply.into_response()),
        }
    }
    let answer = id.map_or(Answer::Unknown, |id| shared.interactions.answer(id, token));
    if let (Answer::Accepted, Some(id), Some(issue), Some(callback)) =
        (&answer, id, &issue, callback)
    {
        apply_callback(shared, id, issue, callback);
    }
    let response = match answer {
        Answer::Accepted => {
            let with_response = query.is_some_and(|q| {
                q.split('&')
                    .any(|pair| pair == "with_response=true" || pair == "with_response=1")
            });
            if with_response {
                // The interaction callback response object; enough to say
                // which interaction was answered.
                let body = json!({
                    "interaction": {
                        "id": id.unwrap_or_default().to_string(),
                        "type": issue.map_or(2, |i| i.kind.type_number()),
                        "activity_instance_id": null,
                        "response_message_id": null,
                        "response_message_loading": false,
                        "response_message_ephemeral": false,
                    },
                    "resource": null,
                });
                json_response(StatusCode::OK, &body)
            } else {
                empty(StatusCode::NO_CONTENT)
            }
        }
        Answer::AlreadyAnswered => json_error(
            StatusCode::BAD_REQUEST,
            "Interaction has already been acknowledged.",
            40060,
        ),
        Answer::Unknown => json_error(StatusCode::NOT_FOUND, "Unknown interaction", 10062),
    };
    Outcome {
        route,
        reply: answer == Answer::Accepted,
        response,
    }
}

/// Follow-ups and edits of the original response: a message by the
/// application's webhook in the interaction's channel.
fn webhook_message(
    shared: &Shared,
    route: &'static str,
    app: &str,
    token: &str,
    body: &RequestBody,
) -> Outcome {
    let bot = &shared.world.bot;
    let origin = shared.interactions.origin(token);
    let Some(origin) = origin.filter(|_| app.parse::<u64>().ok() == Some(bot.application_id))
    else {
        return Outcome::new(
            route,
            json_error(StatusCode::NOT_FOUND, "Unknown Webhook", 10015),
        );
    };
    let edit = route.starts_with("PATCH");
    let checked = match check_message_body(body, edit) {
        Ok(checked) => checked,
        Err(reply) => return Outcome::new(route, reply.into_response()),
    };
    let joined_ms = shared
        .world
        .guild(origin.guild_id)
        .map_or(0, |g| g.bot_joined_ms);
    // A follow-up is a message of the channel (kept, so it is in the channel's history);
    // an edit of the original changes a message already counted.
    let message_id = if edit || checked.ephemeral {
        shared.new_message_id()
    } else {
        post_as_bot(shared, origin.channel_id, &checked)
    };
    let mut message = payloads::message(&MessageSpec {
        message_id,
        channel_id: origin.channel_id,
        guild_id: None,
        author: Author {
            id: bot.user_id,
            username: &bot.username,
            joined_ms,
            bot: true,
        },
        member_roles: None,
        content: &checked.content,
        embeds: checked.embeds,
        webhook_id: Some(bot.application_id),
        application_id: Some(bot.application_id),
    });
    if !checked.components.is_null() {
        message["components"] = checked.components;
    }
    Outcome::new(route, json_response(StatusCode::OK, &message))
}
