use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{IntoResponse, Response};
use protonn_actors::GuildCallError;
use protonn_storage::StorageError;

use crate::metrics;
use crate::pages::layout;

/// `Clear-Site-Data` for a browser that must keep nothing of this site: cache, cookies,
/// and storage (localStorage, IndexedDB, service workers and their caches).
pub(crate) const CLEAR_EVERYTHING: &str = "\"cache\", \"cookies\", \"storage\"";

/// Everything a dashboard request can fail with. Each renders as a page that says what
/// happened and what to do, with a status to match, and is counted by reason.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("invalid web configuration: {0}")]
    Config(String),
    /// No session: log in first, then come back to `next`.
    #[error("log in first")]
    NotLoggedIn { next: String },
    #[error("your session expired; log in again")]
    SessionExpired { next: String },
    #[error(
        "Discord no longer accepts this login (the app was removed or the token revoked); log in again"
    )]
    DiscordRevoked,
    #[error("this login link is invalid, used or expired; start the login again")]
    BadState,
    #[error("the login was cancelled on Discord")]
    LoginDenied,
    #[error("this form expired or did not come from this site; reload the page and try again")]
    Csrf,
    #[error("you cannot manage this server (you need Manage Server, ownership, or a staff role)")]
    Forbidden,
    #[error("no such server")]
    GuildNotFound,
    #[error("the bot is not in this server")]
    BotNotInGuild,
    #[error("{0}")]
    BadForm(String),
    #[error("the request is too large")]
    TooLarge,
    #[error(
        "someone else saved the settings meanwhile (version {current} is current); nothing of yours was saved: reload and apply your change again"
    )]
    Conflict { current: u64 },
    #[error("the server did not answer: {0}")]
    GuildCall(GuildCallError),
    #[error("Discord could not be reached: {0}")]
    Discord(String),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("page not found")]
    NotFound,
    /// The browser's session belonged to a user erased under the children's-data procedure:
    /// the browser is told to clear everything it keeps for this site.
    #[error("this browser's data for this site has been cleared")]
    SiteDataCleared,
}

impl From<GuildCallError> for WebError {
    fn from(err: GuildCallError) -> Self {
        match err {
            GuildCallError::UnknownGuild => Self::GuildNotFound,
            GuildCallError::BotNotInGuild => Self::BotNotInGuild,
            GuildCallError::Forbidden { .. } => Self::Forbidden,
            GuildCallError::Conflict { current } => Self::Conflict { current },
            GuildCallError::Invalid { message } => Self::BadForm(message),
            other => Self::GuildCall(other),
        }
    }
}

impl WebError {
    /// The bounded label this rejection is counted under.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::Config(_) => "config",
            Self::NotLoggedIn { .. } => "not_logged_in",
            Self::SessionExpired { .. } => "session_expired",
            Self::DiscordRevoked => "discord_revoked",
            Self::BadState => "bad_state",
            Self::LoginDenied => "login_denied",
            Self::Csrf => "csrf",
            Self::Forbidden => "forbidden",
            Self::GuildNotFound => "guild_not_found",
            Self::BotNotInGuild => "bot_not_in_guild",
            Self::BadForm(_) => "bad_form",
            Self::TooLarge => "too_large",
            Self::Conflict { .. } => "conflict",
            Self::GuildCall(_) => "guild_call",
            Self::Discord(_) => "discord",
            Self::Storage(_) => "storage",
            Self::NotFound => "not_found",
            Self::SiteDataCleared => "site_data_cleared",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::NotLoggedIn { .. } | Self::SessionExpired { .. } => StatusCode::SEE_OTHER,
            Self::DiscordRevoked => StatusCode::UNAUTHORIZED,
            Self::BadState | Self::LoginDenied | Self::BadForm(_) => StatusCode::BAD_REQUEST,
            Self::Csrf | Self::Forbidden => StatusCode::FORBIDDEN,
            Self::GuildNotFound | Self::BotNotInGuild | Self::NotFound => StatusCode::NOT_FOUND,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::GuildCall(GuildCallError::TimedOut) => StatusCode::GATEWAY_TIMEOUT,
            Self::GuildCall(_) | Self::Discord(_) => StatusCode::BAD_GATEWAY,
            Self::Config(_) | Self::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::SiteDataCleared => StatusCode::OK,
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        metrics::rejected(self.reason());
        match &self {
            Self::NotLoggedIn { next } | Self::SessionExpired { next } => {
                let reason = if matches!(self, Self::SessionExpired { .. }) {
                    "&expired=1"
                } else {
                    ""
                };
                let location = format!(
                    "/login?next={}{reason}",
                    form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
                );
                (StatusCode::SEE_OTHER, [(LOCATION, location)]).into_response()
            }
            Self::SiteDataCleared => {
                let mut response = layout::public_page(layout::site_data_cleared_page());
                response.headers_mut().insert(
                    "clear-site-data",
                    axum::http::HeaderValue::from_static(CLEAR_EVERYTHING),
                );
                response
            }
            Self::Storage(err) => {
                tracing::warn!(error = %err, "dashboard storage failed");
                (self.status(), layout::error_page(&self.to_string())).into_response()
            }
            _ => (self.status(), layout::error_page(&self.to_string())).into_response(),
        }
    }
}
