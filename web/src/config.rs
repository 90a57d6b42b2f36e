//! What the dashboard needs to run: where it is served, where Discord is, its OAuth2 client
//! and its keys.

use std::fmt;
use std::time::Duration;

use crate::WebError;

/// A value that never appears in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A fresh 256-bit key in the form `token_key` takes: for a demo, whose sessions need
    /// not outlive the process.
    pub fn random_key() -> Self {
        use base64::Engine as _;
        use ring::rand::SecureRandom as _;
        let mut key = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut key)
            .expect("the system's random source works");
        Self(base64::engine::general_purpose::STANDARD.encode(key))
    }

    /// Whether this can be a `token_key`: 32 bytes in standard base64.
    pub fn check_key(&self) -> Result<(), WebError> {
        crate::crypto::Sealer::new(self).map(|_| ())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The dashboard's configuration (`[web]` in the config file).
#[derive(Clone, Debug)]
pub struct WebConfig {
    /// The origin browsers use, such as `https://dash.example.com` (no path, no trailing
    /// slash); the OAuth2 redirect URI and every redirect are built from it.
    pub public_url: String,
    /// Discord's root, `https://discord.com`, or the simulator's `http://127.0.0.1:PORT`.
    pub discord_url: String,
    /// The OAuth2 application (the bot's application id).
    pub client_id: u64,
    pub client_secret: Secret,
    /// 32 bytes, base64 (standard alphabet): seals Discord tokens at rest.
    pub token_key: Secret,
    /// A session unused this long ends.
    pub session_idle: Duration,
    /// A session ends this long after login, used or not.
    pub session_max_age: Duration,
    /// `Secure` cookies; may be off only for `http://127.0.0.1` (a newcomer's demo).
    pub secure_cookies: bool,
    /// Budget of one guild call, retries included.
    pub guild_call_deadline: Duration,
    /// Permission bits asked for in "add the bot" links.
    pub bot_permissions: u64,
    /// Paddle Billing webhooks and checkout; `None`: premium is not sold here.
    pub paddle: Option<crate::PaddleConfig>,
    /// A prepared data export stays downloadable (once) this long.
    pub export_for: Duration,
    /// Discord user ids of the bot's operators, who see the admin pages.
    pub operator_ids: Vec<u64>,
}

impl WebConfig {
    pub fn new(
        public_url: impl Into<String>,
        discord_url: impl Into<String>,
        client_id: u64,
        client_secret: Secret,
        token_key: Secret,
    ) -> Self {
        let public_url: String = public_url.into();
        let secure_cookies = !public_url.starts_with("http://127.0.0.1");
        Self {
            public_url: public_url.trim_end_matches('/').to_owned(),
            discord_url: discord_url.into().trim_end_matches('/').to_owned(),
            client_id,
            client_secret,
            token_key,
            session_idle: Duration::from_secs(2 * 3_600),
            session_max_age: Duration::from_secs(7 * 86_400),
            secure_cookies,
            guild_call_deadline: Duration::from_secs(5),
            // View channels, send messages, embed links, read history, manage messages,
            // moderate members: what the bot's commands and moderation use.
            bot_permissions: 0x0000_0100_0000_6C00 | 0x2000,
            paddle: None,
            export_for: protonn_storage::Retention::POLICY.exports,
            operator_ids: Vec::new(),
        }
    }

    /// Refuses settings that would weaken the dashboard.
    pub fn validate(&self) -> Result<(), WebError> {
        let bad = |message: &str| Err(WebError::Config(message.to_owned()));
        if !(self.public_url.starts_with("https://") || self.public_url.starts_with("http://")) {
            return bad("web.public_url must be an http(s) origin");
        }
        if self.public_url.matches('/').count() > 2 {
            return bad("web.public_url is an origin: no path");
        }
        if !self.secure_cookies && !self.public_url.starts_with("http://127.0.0.1") {
            return bad("insecure cookies are allowed only for http://127.0.0.1");
        }
        if self.public_url.starts_with("http://") && self.secure_cookies {
            return bad("Secure cookies need an https:// public_url (or http://127.0.0.1)");
        }
        if self.client_secret.expose().is_empty() {
            return bad("web.client_secret is empty");
        }
        if self.session_idle.is_zero() || self.session_max_age < self.session_idle {
            return bad("web sessions need 0 < session_idle <= session_max_age");
        }
        if self.session_max_age.as_millis() > u128::from(protonn_storage::WEB_SESSION_MAX_AGE_MS) {
            return bad("web.session_max_age is above the 90 days sessions are kept");
        }
        if let Some(paddle) = &self.paddle
            && (paddle.secrets.is_empty() || paddle.secrets.iter().any(|s| s.expose().is_empty()))
        {
            return bad("web.paddle needs at least one webhook secret, none empty");
        }
        crate::crypto::Sealer::new(&self.token_key).map(|_| ())
    }

    pub(crate) fn redirect_uri(&self) -> String {
        format!("{}/auth/callback", self.public_url)
    }
}
