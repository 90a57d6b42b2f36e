use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{StorageError, Timestamp};

/// Longest a dashboard session may live, whatever the web's configuration says: retention of
/// a row that names a user, enforced by the store (TTL on ScyllaDB, read filter and sweep on
/// redb).
pub const WEB_SESSION_MAX_AGE_MS: u64 = 90 * 86_400_000;

/// A browser's session with the dashboard, kept server-side. The cookie holds a secret; only a
/// hash of it is stored (`id`), so reading this table does not let anyone act as a user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebSession {
    /// Hex SHA-256 of the cookie's secret.
    pub id: String,
    /// `None` until the Discord login completes.
    pub user_id: Option<u64>,
    pub created_at: Timestamp,
    /// Last request; the web ends a session idle for longer than its idle timeout.
    pub last_seen: Timestamp,
    /// Absolute end; the store forgets the row then.
    pub expires_at: Timestamp,
    /// The token every state-changing request of this session must carry.
    pub csrf_token: String,
    /// Hash of the OAuth2 `state` of a login in progress, and the same-origin path to return
    /// to; cleared (compare-and-set) when the state is used, so it is used once.
    pub login_state: Option<String>,
    pub return_to: Option<String>,
    /// Discord's access and refresh tokens, sealed by the web (encrypted and authenticated);
    /// the store never sees them in clear.
    pub sealed_tokens: Option<String>,
    /// What the account page shows to tell sessions apart (browser, first address).
    pub label: String,
}

/// A dashboard session as the user's data export shows it: when, and from what browser.
/// Never its secrets: not the cookie's hash (the row key), the CSRF token, the login state
/// or the sealed Discord tokens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebSessionExport {
    pub created_at: Timestamp,
    pub last_seen: Timestamp,
    pub expires_at: Timestamp,
    pub label: String,
}

impl From<&WebSession> for WebSessionExport {
    fn from(session: &WebSession) -> Self {
        Self {
            created_at: session.created_at,
            last_seen: session.last_seen,
            expires_at: web_session_end(session),
            label: session.label.clone(),
        }
    }
}

/// Dashboard sessions.
#[async_trait]
pub trait WebSessionRepo: Send + Sync + 'static {
    /// Creates or replaces the session.
    async fn put_web_session(&self, session: &WebSession) -> Result<(), StorageError>;

    /// The session, unless it does not exist or expired before `now`.
    async fn web_session(
        &self,
        id: &str,
        now: Timestamp,
    ) -> Result<Option<WebSession>, StorageError>;

    /// Replaces `old` by `new` only if the stored session is still exactly `old`; `false`
    /// when it changed or vanished meanwhile (a used login state, a concurrent logout).
    async fn replace_web_session(
        &self,
        old: &WebSession,
        new: &WebSession,
    ) -> Result<bool, StorageError>;

    /// Ends one session; ending a missing one is not an error.
    async fn delete_web_session(&self, id: &str) -> Result<(), StorageError>;

    /// The user's live sessions at `now`, oldest first.
    async fn web_sessions_of(
        &self,
        user_id: u64,
        now: Timestamp,
    ) -> Result<Vec<WebSession>, StorageError>;

    /// Ends every session of the user ("log out everywhere", account deletion); returns how
    /// many there were.
    async fn delete_web_sessions_of(&self, user_id: u64) -> Result<u64, StorageError>;

    /// Removes sessions expired before `now` where the store has no TTL of its own; returns
    /// how many.
    async fn sweep_web_sessions(&self, now: Timestamp) -> Result<u64, StorageError>;
}

/// The instant the store forgets `session`: its own end, capped by the retention limit.
pub(crate) fn web_session_end(session: &WebSession) -> Timestamp {
    session.expires_at.min(Timestamp(
        session.created_at.0.saturating_add(WEB_SESSION_MAX_AGE_MS),
    ))
}
