//! Discord's OAuth2 provider, for dashboards logging in with "Discord" against the simulator.
//!
//! - `GET /oauth2/authorize`: a consent page where a test or a newcomer picks one of the
//!   world's users (owners and stored members); `POST /oauth2/authorize` grants a code (or,
//!   cancelled, `error=access_denied`) and redirects to the client's `redirect_uri`.
//! - `POST /api[/v10]/oauth2/token`: `authorization_code` and `refresh_token` grants, client
//!   credentials in the form or in HTTP Basic, Discord's error bodies (`invalid_client`,
//!   `invalid_grant`, `unsupported_grant_type`, `invalid_request`).
//! - `POST /api[/v10]/oauth2/token/revoke`: revokes an access or refresh token and its pair.
//! - `GET /api/v10/users/@me` and `/users/@me/guilds` for `Bearer` tokens (guilds with the
//!   user's `permissions` and `owner`); `Bot` tokens on `/users/@me` still reach the bot REST.
//! - `GET /api[/v10]/oauth2/applications/@me` for the bot token.
//! - `/sim/oauth2/...`: the test's levers: revoke a user's grants (the user removes the app
//!   in Discord), shorten the token lifetime, count live and issued tokens.
//!
//! Codes live 10 minutes and are used once; a code used twice revokes what it granted, as
//! RFC 6749 §4.1.2 advises. The client is the bot's application with [`OAUTH_CLIENT_SECRET`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rand::RngCore;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::payloads;
use crate::rest::{self, json_response};
use crate::state::AppState;
use crate::world::World;

/// The client secret the simulator's application accepts (public: nothing here is secret).
pub const OAUTH_CLIENT_SECRET: &str = "sim-oauth-client-secret";

const CODE_TTL: Duration = Duration::from_secs(600);
/// Discord's access tokens last a week.
const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(604_800);
/// Users offered on the consent page; any user of the world may still be asked for by id.
const CONSENT_USERS: usize = 12;
/// Scopes the provider grants; others are refused as Discord does (`invalid_scope`).
const KNOWN_SCOPES: &[&str] = &["identify", "guilds", "email"];

/// Grants of the provider.
#[derive(Debug, Default)]
pub(crate) struct OAuth {
    inner: Mutex<Grants>,
}

#[derive(Debug, Default)]
struct Grants {
    codes: HashMap<String, Code>,
    access: HashMap<String, Token>,
    refresh: HashMap<String, Refresh>,
    token_ttl: Option<Duration>,
    /// Tokens issued by each grant, for tests: `[authorization_code, refresh_token]`.
    issued: [u64; 2],
}

#[derive(Debug, Clone)]
struct Code {
    user_id: u64,
    redirect_uri: String,
    scopes: String,
    expires: Instant,
    /// The access token it granted, revoked if the code is presented again.
    granted: Option<String>,
}

#[derive(Debug, Clone)]
struct Token {
    user_id: u64,
    scopes: String,
    expires: Instant,
    refresh: String,
}

#[derive(Debug, Clone)]
struct Refresh {
    user_id: u64,
    scopes: String,
    access: String,
}

impl OAuth {
    fn grants(&self) -> std::sync::MutexGuard<'_, Grants> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn random_token() -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn router() -> Router<AppState> {
    let mut router = Router::new()
        .route("/oauth2/authorize", get(consent_page).post(consent))
        .route(&format!("{}/users/@me", rest::PREFIX), get(current_user))
        .route(
            &format!("{}/users/@me/guilds", rest::PREFIX),
            get(user_guilds),
        )
        .route("/sim/oauth2/users/{user_id}/revoke", post(revoke_user))
        .route("/sim/oauth2/token_ttl_secs/{secs}", post(set_token_ttl))
        .route("/sim/oauth2/stats", get(stats));
    for base in ["/api", rest::PREFIX] {
        router = router
            .route(&format!("{base}/oauth2/token"), post(token))
            .route(&format!("{base}/oauth2/token/revoke"), post(revoke))
            .route(&format!("{base}/oauth2/applications/@me"), get(application));
    }
    router
}

/// Discord's OAuth2 error body.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    json_response(
        status,
        &json!({"error": error, "error_description": description}),
    )
}

fn bad_page(message: &str) -> Response {
    let body = format!(
        "<!doctype html><title>Discord (simulated)</title><h1>Invalid OAuth2 request</h1><p>{}</p>",
        escape(message)
    );
    (
        StatusCode::BAD_REQUEST,
        [(CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[derive(Debug, Deserialize)]
struct AuthorizeQuery {
    client_id: Option<String>,
    redirect_uri: Option<String>,
    response_type: Option<String>,
    scope: Option<String>,
    state: Option<String>,
}

/// The validated request of an authorization, or the page saying what is wrong.
fn check_authorize(world: &World, q: &AuthorizeQuery) -> Result<(String, String), &'static str> {
    if q.client_id.as_deref() != Some(world.bot.application_id.to_string().as_str()) {
        return Err("Unknown application (client_id).");
    }
    if q.response_type.as_deref() != Some("code") {
        return Err("response_type must be \"code\".");
    }
    let Some(redirect_uri) = q
        .redirect_uri
        .clone()
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
    else {
        return Err("Invalid redirect_uri.");
    };
    let scopes = q.scope.clone().unwrap_or_default();
    if scopes.split(' ').any(|s| !KNOWN_SCOPES.contains(&s)) || scopes.is_empty() {
        return Err("Invalid scope.");
    }
    Ok((redirect_uri, scopes))
}

/// The user by id among owners and stored members, with their name.
fn find_user(world: &World, user_id: u64) -> Option<String> {
    world
        .guilds()
        .iter()
        .find_map(|g| g.user(user_id).map(|u| u.username.clone()))
}

async fn consent_page(State(shared): State<AppState>, Query(q): Query<AuthorizeQuery>) -> Response {
    if let Err(message) = check_authorize(&shared.world, &q) {
        return bad_page(message);
    }
    let mut users: Vec<(u64, String, String)> = Vec::new();
    for guild in shared.world.guilds() {
        if users.len() >= CONSENT_USERS {
            break;
        }
        if !users.iter().any(|(id, _, _)| *id == guild.owner.id) {
            users.push((
                guild.owner.id,
                guild.owner.username.clone(),
                format!("owner of {}", guild.name),
            ));
        }
        if let Some(member) = guild.members.first()
            && !users.iter().any(|(id, _, _)| *id == member.id)
        {
            users.push((
                member.id,
                member.username.clone(),
                format!("member of {}", guild.name),
            ));
        }
    }
    let hidden: String = [
        ("client_id", &q.client_id),
        ("redirect_uri", &q.redirect_uri),
        ("response_type", &q.response_type),
        ("scope", &q.scope),
        ("state", &q.state),
    ]
    .iter()
    .filter_map(|(name, value)| {
        value.as_ref().map(|v| {
            format!(
                "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
                escape(v)
            )
        })
    })
    .collect();
    let choices: String = users
        .iter()
        .map(|(id, name, about)| {
            format!(
                "<li><button type=\"submit\" name=\"user_id\" value=\"{id}\" data-user-id=\"{id}\">Log in as {} <small>({})</small></button></li>",
                escape(name),
                escape(about)
            )
        })
        .collect();
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Discord (simulated): authorize</title></head>\
         <body><h1>Authorize {app}</h1><p>The application asks for: {scopes}. Pick a simulated user.</p>\
         <form method=\"post\" action=\"/oauth2/authorize\">{hidden}<ul>{choices}</ul>\
         <button type=\"submit\" name=\"cancel\" value=\"1\">Cancel</button></form></body></html>",
        app = "Protonn",
        scopes = escape(q.scope.as_deref().unwrap_or("")),
    );
    (
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct ConsentForm {
    #[serde(flatten)]
    authorize: AuthorizeQuery,
    user_id: Option<String>,
    cancel: Option<String>,
}

/// A form body as `T`; every field is a string (or absent), the last of a repeated name wins.
fn form<T: serde::de::DeserializeOwned>(body: &[u8]) -> Option<T> {
    let pairs: serde_json::Map<String, Value> = form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect();
    serde_json::from_value(Value::Object(pairs)).ok()
}

fn redirect(location: &str) -> Response {
    let mut response = StatusCode::FOUND.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

fn with_query(base: &str, pairs: &[(&str, &str)]) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    let joiner = if base.contains('?') { '&' } else { '?' };
    format!("{base}{joiner}{query}")
}

async fn consent(State(shared): State<AppState>, body: Bytes) -> Response {
    let Some(form) = form::<ConsentForm>(&body) else {
        return bad_page("Malformed form.");
    };
    let (redirect_uri, scopes) = match check_authorize(&shared.world, &form.authorize) {
        Ok(checked) => checked,
        Err(message) => return bad_page(message),
    };
    let state = form.authorize.state.clone();
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    if form.cancel.is_some() {
        pairs.push(("error", "access_denied"));
        pairs.push((
            "error_description",
            "The resource owner or authorization server denied the request",
        ));
        if let Some(state) = &state {
            pairs.push(("state", state));
        }
        return redirect(&with_query(&redirect_uri, &pairs));
    }
    let Some(user_id) = form.user_id.as_deref().and_then(|u| u.parse::<u64>().ok()) else {
        return bad_page("Pick a user.");
    };
    if find_user(&shared.world, user_id).is_none() {
        return bad_page("No such user in the simulated world.");
    }
    let code = random_token();
    shared.oauth.grants().codes.insert(
        code.clone(),
        Code {
            user_id,
            redirect_uri: redirect_uri.clone(),
            scopes,
            expires: Instant::now() + CODE_TTL,
            granted: None,
        },
    );
    pairs.push(("code", &code));
    if let Some(state) = &state {
        pairs.push(("state", state));
    }
    redirect(&with_query(&redirect_uri, &pairs))
}

#[derive(Debug, Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    refresh_token: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// Client credentials from HTTP Basic or the form, checked against the application.
fn client_ok(world: &World, headers: &HeaderMap, form: &TokenForm) -> bool {
    let basic = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(base64_decode)
        .and_then(|raw| {
            let (id, secret) = raw.split_once(':')?;
            Some((id.to_owned(), secret.to_owned()))
        });
    let (id, secret) = match (basic, &form.client_id, &form.client_secret) {
        (Some(pair), _, _) => pair,
        (None, Some(id), Some(secret)) => (id.clone(), secret.clone()),
        _ => return false,
    };
    id == world.bot.application_id.to_string() && secret == OAUTH_CLIENT_SECRET
}

fn base64_decode(text: &str) -> Option<String> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    String::from_utf8(raw).ok()
}

fn issue(grants: &mut Grants, user_id: u64, scopes: &str) -> Value {
    let ttl = grants.token_ttl.unwrap_or(DEFAULT_TOKEN_TTL);
    let access = random_token();
    let refresh = random_token();
    grants.access.insert(
        access.clone(),
        Token {
            user_id,
            scopes: scopes.to_owned(),
            expires: Instant::now() + ttl,
            refresh: refresh.clone(),
        },
    );
    grants.refresh.insert(
        refresh.clone(),
        Refresh {
            user_id,
            scopes: scopes.to_owned(),
            access: access.clone(),
        },
    );
    json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": ttl.as_secs(),
        "refresh_token": refresh,
        "scope": scopes,
    })
}

async fn token(State(shared): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(form) = form::<TokenForm>(&body) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Malformed body");
    };
    if !client_ok(&shared.world, &headers, &form) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Invalid client credentials",
        );
    }
    let mut grants = shared.oauth.grants();
    match form.grant_type.as_deref() {
        Some("authorization_code") => {
            let (Some(code), Some(redirect_uri)) = (&form.code, &form.redirect_uri) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "Missing \"code\" or \"redirect_uri\" in request.",
                );
            };
            let Some(grant) = grants.codes.get(code).cloned() else {
                return invalid_grant("Invalid \"code\" in request.");
            };
            if let Some(granted) = &grant.granted {
                // A replayed code: revoke what it granted.
                revoke_access(&mut grants, &granted.clone());
                grants.codes.remove(code);
                return invalid_grant("Invalid \"code\" in request.");
            }
            if grant.expires <= Instant::now() {
                grants.codes.remove(code);
                return invalid_grant("Invalid \"code\" in request.");
            }
            if &grant.redirect_uri != redirect_uri {
                return invalid_grant("Invalid \"redirect_uri\" in request.");
            }
            let body = issue(&mut grants, grant.user_id, &grant.scopes);
            grants.issued[0] += 1;
            let access = body["access_token"].as_str().unwrap_or_default().to_owned();
            if let Some(code) = grants.codes.get_mut(code) {
                code.granted = Some(access);
            }
            json_response(StatusCode::OK, &body)
        }
        Some("refresh_token") => {
            let Some(refresh) = &form.refresh_token else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "Missing \"refresh_token\" in request.",
                );
            };
            let Some(old) = grants.refresh.remove(refresh) else {
                return invalid_grant("Invalid \"refresh_token\" in request.");
            };
            grants.access.remove(&old.access);
            let body = issue(&mut grants, old.user_id, &old.scopes);
            grants.issued[1] += 1;
            json_response(StatusCode::OK, &body)
        }
        _ => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Unsupported grant type",
        ),
    }
}

fn invalid_grant(description: &str) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", description)
}

fn revoke_access(grants: &mut Grants, access: &str) {
    if let Some(token) = grants.access.remove(access) {
        grants.refresh.remove(&token.refresh);
    }
}

#[derive(Debug, Deserialize)]
struct RevokeForm {
    token: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

async fn revoke(State(shared): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(form) = form::<RevokeForm>(&body) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Malformed body");
    };
    let credentials = TokenForm {
        grant_type: None,
        code: None,
        redirect_uri: None,
        refresh_token: None,
        client_id: form.client_id.clone(),
        client_secret: form.client_secret.clone(),
    };
    if !client_ok(&shared.world, &headers, &credentials) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Invalid client credentials",
        );
    }
    let Some(token) = form.token else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing \"token\" in request.",
        );
    };
    let mut grants = shared.oauth.grants();
    revoke_access(&mut grants, &token);
    if let Some(refresh) = grants.refresh.remove(&token) {
        grants.access.remove(&refresh.access);
    }
    // Discord answers 200 with an empty object whether or not the token existed.
    json_response(StatusCode::OK, &json!({}))
}

/// Why a `Bearer` request is refused.
enum Refused {
    Unauthorized,
    MissingAccess,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Self::Unauthorized => {
                rest::json_error(StatusCode::UNAUTHORIZED, "401: Unauthorized", 0)
            }
            Self::MissingAccess => rest::json_error(StatusCode::FORBIDDEN, "Missing Access", 50001),
        }
    }
}

/// The user behind a live `Bearer` token with `scope`, or Discord's 401 (403 without the
/// scope).
fn bearer(shared: &AppState, headers: &HeaderMap, scope: &str) -> Result<u64, Refused> {
    let unauthorized = || Refused::Unauthorized;
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(unauthorized)?;
    let grants = shared.oauth.grants();
    let grant = grants.access.get(token).ok_or_else(unauthorized)?;
    if grant.expires <= Instant::now() {
        return Err(unauthorized());
    }
    if !grant.scopes.split(' ').any(|s| s == scope) {
        return Err(Refused::MissingAccess);
    }
    Ok(grant.user_id)
}

async fn current_user(
    state: State<AppState>,
    peer: ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let is_bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer "));
    if !is_bearer {
        return rest::handle(state, peer, method, uri, headers, body).await;
    }
    let shared = state.0;
    let user_id = match bearer(&shared, &headers, "identify") {
        Ok(user_id) => user_id,
        Err(refused) => return refused.into_response(),
    };
    let name = find_user(&shared.world, user_id).unwrap_or_default();
    let mut user = payloads::user(user_id, &name, false);
    if let Value::Object(fields) = &mut user {
        fields.insert("locale".into(), json!("en-US"));
        fields.insert("mfa_enabled".into(), json!(false));
        fields.insert("premium_type".into(), json!(0));
    }
    json_response(StatusCode::OK, &user)
}

async fn user_guilds(State(shared): State<AppState>, headers: HeaderMap) -> Response {
    let user_id = match bearer(&shared, &headers, "guilds") {
        Ok(user_id) => user_id,
        Err(refused) => return refused.into_response(),
    };
    // Discord caps the list at 200 per page; tests never exceed it.
    let guilds: Vec<Value> = shared
        .world
        .guilds()
        .iter()
        .filter(|g| g.user(user_id).is_some())
        .take(200)
        .map(|g| {
            let owner = g.owner.id == user_id;
            let permissions = if owner {
                payloads::all_permissions()
            } else {
                payloads::everyone_permissions()
            };
            json!({
                "id": g.id.to_string(),
                "name": g.name,
                "icon": null,
                "banner": null,
                "owner": owner,
                "permissions": permissions.to_string(),
                "features": [],
            })
        })
        .collect();
    json_response(StatusCode::OK, &Value::Array(guilds))
}

async fn application(State(shared): State<AppState>, headers: HeaderMap) -> Response {
    let authorized = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bot ") && shared.token_matches(v));
    if !authorized {
        return rest::json_error(StatusCode::UNAUTHORIZED, "401: Unauthorized", 0);
    }
    json_response(StatusCode::OK, &payloads::application(&shared.world.bot))
}

async fn revoke_user(State(shared): State<AppState>, Path(user_id): Path<u64>) -> Response {
    let mut grants = shared.oauth.grants();
    let before = grants.access.len() + grants.refresh.len();
    grants.access.retain(|_, t| t.user_id != user_id);
    grants.refresh.retain(|_, r| r.user_id != user_id);
    let revoked = before - grants.access.len() - grants.refresh.len();
    json_response(StatusCode::OK, &json!({"revoked": revoked}))
}

async fn set_token_ttl(State(shared): State<AppState>, Path(secs): Path<u64>) -> Response {
    shared.oauth.grants().token_ttl = Some(Duration::from_secs(secs.max(1)));
    json_response(StatusCode::OK, &json!({"token_ttl_secs": secs.max(1)}))
}

/// What the provider holds and issued: live tokens, and tokens issued by each grant type.
async fn stats(State(shared): State<AppState>) -> Response {
    let grants = shared.oauth.grants();
    json_response(
        StatusCode::OK,
        &json!({
            "access_tokens": grants.access.len(),
            "refresh_tokens": grants.refresh.len(),
            "issued_by_code": grants.issued[0],
            "issued_by_refresh": grants.issued[1],
        }),
    )
}
