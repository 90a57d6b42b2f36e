//! Browser sessions: the cookie, loading a session for a request, idle and absolute expiry,
//! refreshing Discord tokens before they expire, and the CSRF check.

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::header::{COOKIE, ORIGIN, SET_COOKIE, USER_AGENT};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use protonn_storage::{Timestamp, WebSession};
use serde::{Deserialize, Serialize};

use crate::crypto::{digest, same};
use crate::discord::{DiscordError, Tokens};
use crate::{AppState, WebConfig, WebError};

/// Refresh Discord's access token when it has less than this left, so a page never meets an
/// expired one.
const REFRESH_AHEAD: Duration = Duration::from_secs(600);
/// `last_seen` is written at most this often: a write per page view would be a write per
/// click for nothing.
const TOUCH_EVERY: Duration = Duration::from_secs(60);
/// A login has this long between leaving for Discord and coming back.
pub(crate) const LOGIN_WINDOW: Duration = Duration::from_secs(600);

/// What is sealed into a session: the user's Discord tokens and how to greet them.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Sealed {
    pub(crate) tokens: Tokens,
    pub(crate) username: String,
}

/// The cookie's name: `__Host-` (Secure, path /, no domain) wherever cookies are Secure.
pub(crate) fn cookie_name(config: &WebConfig) -> &'static str {
    if config.secure_cookies {
        "__Host-protonn_session"
    } else {
        "protonn_session"
    }
}

pub(crate) fn read_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

pub(crate) fn set_cookie(
    config: &WebConfig,
    secret: &str,
    max_age: Duration,
) -> (axum::http::HeaderName, HeaderValue) {
    let secure = if config.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let value = format!(
        "{}={secret}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
        cookie_name(config),
        max_age.as_secs()
    );
    (
        SET_COOKIE,
        HeaderValue::from_str(&value).expect("cookie values are URL-safe"),
    )
}

pub(crate) fn clear_cookie(config: &WebConfig) -> (axum::http::HeaderName, HeaderValue) {
    set_cookie(config, "", Duration::ZERO)
}

/// A short description of the browser for the account page.
pub(crate) fn label(headers: &HeaderMap) -> String {
    let agent = headers
        .get(USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown browser");
    let name = ["Edg/", "Firefox/", "Chrome/", "Safari/"]
        .iter()
        .find(|n| agent.contains(*n))
        .map_or("Browser", |n| n.trim_end_matches('/'));
    let os = ["Android", "iPhone", "Windows", "Mac OS", "Linux"]
        .iter()
        .find(|o| agent.contains(*o))
        .copied()
        .unwrap_or("unknown system");
    format!("{name} on {os}")
}

/// The same-origin path `next` names, or the guild picker: never another site.
pub(crate) fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.starts_with("/\\")
                && path.len() <= 512
                && !path.chars().any(|c| c.is_control() || c == '\\') =>
        {
            path.to_owned()
        }
        _ => "/guilds".to_owned(),
    }
}

/// A logged-in request: the session, whose user, and their (fresh) Discord tokens.
pub(crate) struct Authed {
    pub(crate) session: WebSession,
    pub(crate) user_id: u64,
    pub(crate) sealed: Sealed,
    /// The request's `Origin` is absent or ours.
    same_origin: bool,
}

impl Authed {
    /// Refuses a state-changing request without this session's CSRF token, or from
    /// another origin.
    pub(crate) fn check_csrf(&self, presented: Option<&str>) -> Result<(), WebError> {
        match presented {
            Some(token) if self.same_origin && same(token, &self.session.csrf_token) => Ok(()),
            _ => Err(WebError::Csrf),
        }
    }

    pub(crate) fn csrf(&self) -> &str {
        &self.session.csrf_token
    }
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        let next = parts
            .uri
            .path_and_query()
            .map_or("/guilds".to_owned(), |p| p.as_str().to_owned());
        let now = Timestamp::now();
        let cookie = read_cookie(&parts.headers, cookie_name(&state.config))
            .ok_or_else(|| WebError::NotLoggedIn { next: next.clone() })?;
        let expired = || WebError::SessionExpired { next: next.clone() };
        let Some(session) = state.sessions.web_session(&digest(&cookie), now).await? else {
            if state.store.take_browser_clearing(&digest(&cookie)).await? {
                return Err(WebError::SiteDataCleared);
            }
            return Err(expired());
        };
        let Some(user_id) = session.user_id else {
            return Err(WebError::NotLoggedIn { next });
        };
        if session.last_seen.saturating_add(state.config.session_idle) <= now {
            state.sessions.delete_web_session(&session.id).await?;
            return Err(expired());
        }
        let context = user_id.to_string();
        let Some(sealed) = session
            .sealed_tokens
            .as_deref()
            .and_then(|s| state.sealer.open(s, &context))
            .and_then(|plain| serde_json::from_slice::<Sealed>(&plain).ok())
        else {
            // Sealed with a key we no longer have: the session cannot act for the user.
            state.sessions.delete_web_session(&session.id).await?;
            return Err(expired());
        };
        let same_origin = parts
            .headers
            .get(ORIGIN)
            .is_none_or(|o| o.to_str().is_ok_and(|o| o == state.config.public_url));
        let mut authed = Authed {
            session,
            user_id,
            sealed,
            same_origin,
        };
        let refresh_due =
            Timestamp(authed.sealed.tokens.expires_at) <= now.saturating_add(REFRESH_AHEAD);
        if refresh_due {
            refresh(state, &mut authed, now).await?;
        } else if authed.session.last_seen.saturating_add(TOUCH_EVERY) <= now {
            let touched = WebSession {
                last_seen: now,
                ..authed.session.clone()
            };
            if state
                .sessions
                .replace_web_session(&authed.session, &touched)
                .await?
            {
                authed.session = touched;
                state.store.touch_account(user_id, now).await?;
            }
        }
        Ok(authed)
    }
}

/// Swaps the session's tokens for fresh ones. A refresh token is single use: when two
/// requests race, the loser finds the winner's tokens in the session instead of failing.
async fn refresh(state: &AppState, authed: &mut Authed, now: Timestamp) -> Result<(), WebError> {
    match state
        .discord
        .refresh(&authed.sealed.tokens.refresh_token, now.as_millis())
        .await
    {
        Ok(tokens) => {
            let sealed = Sealed {
                tokens,
                username: authed.sealed.username.clone(),
            };
            let updated = WebSession {
                last_seen: now,
                sealed_tokens: Some(seal(state, authed.user_id, &sealed)),
                ..authed.session.clone()
            };
            if state
                .sessions
                .replace_web_session(&authed.session, &updated)
                .await?
            {
                authed.session = updated;
                authed.sealed = sealed;
            }
            Ok(())
        }
        Err(DiscordError::Revoked) => {
            let current = state.sessions.web_session(&authed.session.id, now).await?;
            if let Some(current) = current
                && current.sealed_tokens != authed.session.sealed_tokens
            {
                // Someone else refreshed first; theirs are good.
                return Ok(());
            }
            state
                .sessions
                .delete_web_session(&authed.session.id)
                .await?;
            Err(WebError::DiscordRevoked)
        }
        Err(err) if Timestamp(authed.sealed.tokens.expires_at) > now => {
            tracing::debug!(error = %err, "token refresh failed; the current token still works");
            Ok(())
        }
        Err(err) => Err(WebError::Discord(err.to_string())),
    }
}

pub(crate) fn seal(state: &AppState, user_id: u64, sealed: &Sealed) -> String {
    let plain = serde_json::to_vec(sealed).expect("sealed data serialises");
    state.sealer.seal(&plain, &user_id.to_string())
}

pub(crate) fn open(state: &AppState, session: &WebSession) -> Option<Sealed> {
    let user_id = session.user_id?;
    let plain = state
        .sealer
        .open(session.sealed_tokens.as_deref()?, &user_id.to_string())?;
    serde_json::from_slice(&plain).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/guilds/1/settings")), "/guilds/1/settings");
        for evil in [
            "https://evil.example",
            "//evil.example",
            "/\\evil.example",
            "evil",
            "/a\r\nSet-Cookie: x",
        ] {
            assert_eq!(safe_next(Some(evil)), "/guilds", "{evil}");
        }
        assert_eq!(safe_next(None), "/guilds");
    }

    #[test]
    fn the_session_cookie_is_read_by_name_only() {
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_static("a=1; protonn_session=abc; b=2"),
        );
        assert_eq!(
            read_cookie(&headers, "protonn_session").as_deref(),
            Some("abc")
        );
        assert_eq!(read_cookie(&headers, "protonn"), None);
    }
}
