//! Discord's OAuth2 and user endpoints, as the dashboard's server calls them. Tokens travel
//! only between this server and Discord; the browser never sees one.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::config::WebConfig;

/// Every Discord call's budget: a login waits on it.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Bodies above this are not Discord's answers.
const MAX_BODY: usize = 1 << 20;

/// What can go wrong talking to Discord.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DiscordError {
    /// The token or grant is no longer valid (401, `invalid_grant`).
    #[error("the token or grant was refused")]
    Revoked,
    #[error("Discord answered {status}: {error}")]
    Rejected { status: u16, error: String },
    #[error("{0}")]
    Transport(String),
}

/// Tokens of one user, as they are sealed into the session.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Tokens {
    pub(crate) access_token: String,
    pub(crate) refresh_token: String,
    /// Unix ms after which the access token no longer works.
    pub(crate) expires_at: u64,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    refresh_token: String,
    expires_in: u64,
}

#[derive(Deserialize)]
struct OAuthErrorBody {
    error: Option<String>,
}

/// The logged-in user (`GET /users/@me`).
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct DiscordUser {
    #[serde(deserialize_with = "snowflake")]
    pub(crate) id: u64,
    pub(crate) username: String,
    pub(crate) global_name: Option<String>,
    pub(crate) avatar: Option<String>,
}

/// One of the user's guilds (`GET /users/@me/guilds`).
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct UserGuild {
    #[serde(deserialize_with = "snowflake")]
    pub(crate) id: u64,
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) owner: bool,
    #[serde(deserialize_with = "snowflake")]
    pub(crate) permissions: u64,
}

fn snowflake<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(serde::de::Error::custom)
}

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Discord's HTTP API for the dashboard; clones share connections.
#[derive(Clone)]
pub(crate) struct Discord {
    client: HttpClient,
    root: Arc<str>,
    basic: HeaderValue,
}

impl Discord {
    pub(crate) fn new(config: &WebConfig) -> Self {
        let connector = protonn_actors::rest::discord_connector();
        let credentials = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            config.client_id,
            config.client_secret.expose()
        ));
        let mut basic = HeaderValue::from_str(&format!("Basic {credentials}"))
            .unwrap_or_else(|_| HeaderValue::from_static("Basic invalid"));
        basic.set_sensitive(true);
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            root: Arc::from(config.discord_url.as_str()),
            basic,
        }
    }

    /// The authorization page a browser is sent to.
    pub(crate) fn authorize_url(&self, config: &WebConfig, state: &str) -> String {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", &config.client_id.to_string())
            .append_pair("redirect_uri", &config.redirect_uri())
            .append_pair("response_type", "code")
            .append_pair("scope", "identify guilds")
            .append_pair("state", state)
            .append_pair("prompt", "none")
            .finish();
        format!("{}/oauth2/authorize?{query}", self.root)
    }

    /// The "add the bot" link for one guild.
    pub(crate) fn invite_url(&self, config: &WebConfig, guild_id: u64) -> String {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", &config.client_id.to_string())
            .append_pair("scope", "bot applications.commands")
            .append_pair("permissions", &config.bot_permissions.to_string())
            .append_pair("guild_id", &guild_id.to_string())
            .append_pair("disable_guild_select", "true")
            .finish();
        format!("{}/oauth2/authorize?{query}", self.root)
    }

    pub(crate) async fn exchange_code(
        &self,
        code: &str,
        redirect_uri: &str,
        now_ms: u64,
    ) -> Result<Tokens, DiscordError> {
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("redirect_uri", redirect_uri)
            .finish();
        self.token_request("/api/v10/oauth2/token", form, now_ms)
            .await
    }

    pub(crate) async fn refresh(
        &self,
        refresh_token: &str,
        now_ms: u64,
    ) -> Result<Tokens, DiscordError> {
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "refresh_token")
            .append_pair("refresh_token", refresh_token)
            .finish();
        self.token_request("/api/v10/oauth2/token", form, now_ms)
            .await
    }

    /// Revokes a token (and so its pair); Discord answers 200 for unknown tokens too.
    pub(crate) async fn revoke(&self, token: &str) -> Result<(), DiscordError> {
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .finish();
        let (status, _) = self
            .send(
                Method::POST,
                "/api/v10/oauth2/token/revoke",
                Auth::Client,
                Some(form),
            )
            .await?;
        match status {
            s if s.is_success() => Ok(()),
            s => Err(DiscordError::Rejected {
                status: s.as_u16(),
                error: "revoke".into(),
            }),
        }
    }

    pub(crate) async fn current_user(&self, access: &str) -> Result<DiscordUser, DiscordError> {
        self.get_json("/api/v10/users/@me", access).await
    }

    pub(crate) async fn guilds(&self, access: &str) -> Result<Vec<UserGuild>, DiscordError> {
        self.get_json("/api/v10/users/@me/guilds", access).await
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        access: &str,
    ) -> Result<T, DiscordError> {
        let (status, body) = self
            .send(Method::GET, path, Auth::Bearer(access), None)
            .await?;
        match status {
            StatusCode::OK => serde_json::from_slice(&body)
                .map_err(|err| DiscordError::Transport(format!("{path}: {err}"))),
            StatusCode::UNAUTHORIZED => Err(DiscordError::Revoked),
            s => Err(DiscordError::Rejected {
                status: s.as_u16(),
                error: path.to_owned(),
            }),
        }
    }

    async fn token_request(
        &self,
        path: &str,
        form: String,
        now_ms: u64,
    ) -> Result<Tokens, DiscordError> {
        let (status, body) = self
            .send(Method::POST, path, Auth::Client, Some(form))
            .await?;
        if status == StatusCode::OK {
            let tokens: TokenResponse = serde_json::from_slice(&body)
                .map_err(|err| DiscordError::Transport(format!("token response: {err}")))?;
            return Ok(Tokens {
                access_token: tokens.access_token,
                refresh_token: tokens.refresh_token,
                expires_at: now_ms.saturating_add(tokens.expires_in.saturating_mul(1000)),
            });
        }
        let error = serde_json::from_slice::<OAuthErrorBody>(&body)
            .ok()
            .and_then(|b| b.error)
            .unwrap_or_default();
        if error == "invalid_grant" {
            return Err(DiscordError::Revoked);
        }
        Err(DiscordError::Rejected {
            status: status.as_u16(),
            error,
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        auth: Auth<'_>,
        form: Option<String>,
    ) -> Result<(StatusCode, Bytes), DiscordError> {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.root));
        match auth {
            Auth::Client => builder = builder.header(AUTHORIZATION, self.basic.clone()),
            Auth::Bearer(token) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| DiscordError::Revoked)?;
                value.set_sensitive(true);
                builder = builder.header(AUTHORIZATION, value);
            }
        }
        let body = match form {
            Some(form) => {
                builder = builder.header(CONTENT_TYPE, "application/x-www-form-urlencoded");
                Full::new(Bytes::from(form))
            }
            None => Full::new(Bytes::new()),
        };
        let request = builder
            .body(body)
            .map_err(|err| DiscordError::Transport(err.to_string()))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|err| DiscordError::Transport(err.to_string()))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|err| DiscordError::Transport(err.to_string()))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| DiscordError::Transport("Discord did not answer in time".into()))?
    }
}

enum Auth<'a> {
    Client,
    Bearer(&'a str),
}
