//! Login with Discord (authorization code), its callback, and logout.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use maud::html;
use protonn_storage::{Timestamp, WebSession};
use serde::Deserialize;

use super::layout::{self, Audience};
use super::see_other;
use crate::crypto::{digest, random_token, same};
use crate::discord::DiscordError;
use crate::session::{self, Authed, LOGIN_WINDOW, Sealed};
use crate::{AppState, WebError, metrics};

#[derive(Debug, Deserialize)]
pub(crate) struct LoginQuery {
    next: Option<String>,
    expired: Option<String>,
    logged_out: Option<String>,
}

pub(crate) async fn login(Query(q): Query<LoginQuery>) -> Response {
    let next = session::safe_next(q.next.as_deref());
    let start = format!(
        "/auth/login?next={}",
        form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
    );
    layout::public_page(layout::page(
        "Log in",
        None,
        Audience::Public,
        html! {
            h1 { "Pro-tonn dashboard" }
            @if q.expired.is_some() {
                p.notice role="status" { "Your session ended. Log in again to continue." }
            }
            @if q.logged_out.is_some() {
                p.notice role="status" { "You are logged out. Nothing of your account is kept in this browser." }
            }
            p { "Configure the bot for the servers you manage. You log in with your Discord account; we ask Discord for your name and your server list only." }
            p { a.button id="login" href=(start) { "Log in with Discord" } }
        },
    ))
}

/// Starts a login: a fresh anonymous session holding a hash of the `state` sent to Discord,
/// so the callback must come back to this browser, once.
pub(crate) async fn start_login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Result<Response, WebError> {
    let now = Timestamp::now();
    if let Some(old) = session::read_cookie(&headers, session::cookie_name(&state.config)) {
        state.sessions.delete_web_session(&digest(&old)).await?;
    }
    let secret = random_token();
    let oauth_state = random_token();
    let pending = WebSession {
        id: digest(&secret),
        user_id: None,
        created_at: now,
        last_seen: now,
        expires_at: now.saturating_add(LOGIN_WINDOW),
        csrf_token: random_token(),
        login_state: Some(digest(&oauth_state)),
        return_to: Some(session::safe_next(q.next.as_deref())),
        sealed_tokens: None,
        label: session::label(&headers),
    };
    state.sessions.put_web_session(&pending).await?;
    let mut response = see_other(&state.discord.authorize_url(&state.config, &oauth_state));
    let (name, value) = session::set_cookie(&state.config, &secret, LOGIN_WINDOW);
    response.headers_mut().append(name, value);
    Ok(response)
}

#[derive(Debug, Deserialize)]
pub(crate) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// Discord sends the browser back here. The `state` must match this browser's pending
/// login and is spent by a compare-and-set, so a replayed or forged one changes nothing.
pub(crate) async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Result<Response, WebError> {
    let result = complete_login(&state, &headers, q).await;
    match &result {
        Ok(_) => metrics::login("ok"),
        Err(WebError::LoginDenied) => metrics::login("denied"),
        Err(WebError::BadState) => metrics::login("bad_state"),
        Err(_) => metrics::login("discord_error"),
    }
    result
}

async fn complete_login(
    state: &AppState,
    headers: &HeaderMap,
    q: CallbackQuery,
) -> Result<Response, WebError> {
    let now = Timestamp::now();
    let cookie = session::read_cookie(headers, session::cookie_name(&state.config))
        .ok_or(WebError::BadState)?;
    let pending = state
        .sessions
        .web_session(&digest(&cookie), now)
        .await?
        .filter(|s| s.user_id.is_none())
        .ok_or(WebError::BadState)?;
    let expected = pending.login_state.as_deref().ok_or(WebError::BadState)?;
    let presented = q.state.as_deref().ok_or(WebError::BadState)?;
    if !same(&digest(presented), expected) {
        return Err(WebError::BadState);
    }
    let spent = WebSession {
        login_state: None,
        ..pending.clone()
    };
    if !state.sessions.replace_web_session(&pending, &spent).await? {
        return Err(WebError::BadState);
    }
    if q.error.is_some() {
        state.sessions.delete_web_session(&spent.id).await?;
        return Err(WebError::LoginDenied);
    }
    let code = q.code.as_deref().ok_or(WebError::BadState)?;
    let tokens = state
        .discord
        .exchange_code(code, &state.config.redirect_uri(), now.as_millis())
        .await
        .map_err(|err| match err {
            DiscordError::Revoked => WebError::BadState,
            other => WebError::Discord(other.to_string()),
        })?;
    let user = match state.discord.current_user(&tokens.access_token).await {
        Ok(user) => user,
        Err(err) => {
            let _ = state.discord.revoke(&tokens.access_token).await;
            return Err(WebError::Discord(err.to_string()));
        }
    };
    // A new secret at login: a session id an attacker planted before login is worthless.
    let secret = random_token();
    let sealed = Sealed {
        tokens,
        username: user.global_name.clone().unwrap_or(user.username.clone()),
    };
    let session = WebSession {
        id: digest(&secret),
        user_id: Some(user.id),
        created_at: now,
        last_seen: now,
        expires_at: now.saturating_add(state.config.session_max_age),
        csrf_token: random_token(),
        login_state: None,
        return_to: None,
        sealed_tokens: Some(session::seal(state, user.id, &sealed)),
        label: spent.label.clone(),
    };
    state.sessions.put_web_session(&session).await?;
    state.sessions.delete_web_session(&spent.id).await?;
    // The account's last activity: inactive accounts are erased after their retention.
    state.store.touch_account(user.id, now).await?;
    let next = session::safe_next(spent.return_to.as_deref());
    let mut response = see_other(&next);
    let (name, value) = session::set_cookie(&state.config, &secret, state.config.session_max_age);
    response.headers_mut().append(name, value);
    let _ = user.avatar;
    Ok(response)
}

/// Ends this session: Discord's tokens revoked, the row deleted, the cookie and the
/// browser's cached pages cleared.
pub(crate) async fn logout(
    State(state): State<AppState>,
    authed: Authed,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, WebError> {
    super::user_form(&authed, body)?;
    revoke(&state, &authed.sealed).await;
    state
        .sessions
        .delete_web_session(&authed.session.id)
        .await?;
    metrics::login("logout");
    Ok(logged_out(&state))
}

pub(crate) async fn revoke(state: &AppState, sealed: &Sealed) {
    for token in [&sealed.tokens.refresh_token, &sealed.tokens.access_token] {
        if let Err(err) = state.discord.revoke(token).await {
            tracing::info!(error = %err, "revoking a Discord token at logout failed");
        }
    }
}

pub(crate) fn logged_out(state: &AppState) -> Response {
    let mut response = see_other("/login?logged_out=1");
    let (name, value) = session::clear_cookie(&state.config);
    let headers = response.headers_mut();
    headers.append(name, value);
    headers.insert("clear-site-data", HeaderValue::from_static("\"cache\""));
    response
}
