//! One HTTP round trip to Discord's REST API (or the simulator), nothing more: no retries
//! and no limits, which are the caller's. The same hyper stack twilight-http uses.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{
    AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue, USER_AGENT,
};
use hyper::{Method, StatusCode};
use hyper_rustls::ConfigBuilderExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use protonn_shard::BotToken;
use twilight_http::request::Request;

use super::RestError;

const USER_AGENT_VALUE: &str = concat!(
    "DiscordBot (https://github.com/protonn/protonn, ",
    env!("CARGO_PKG_VERSION"),
    ")"
);

/// Where requests go and with which token. Its `Debug` never shows the token.
pub struct Transport {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// `https://discord.com/api/v10` or the simulator's `http://host:port/api/v10`.
    base: String,
    authorization: HeaderValue,
    timeout: Duration,
}

/// A response: status, headers and the whole body.
pub(super) struct RawResponse {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
}

/// How every client of ours reaches Discord: HTTPS with ring and the webpki roots, or plain
/// HTTP to the simulator, with TCP_NODELAY (a request written in two parts must not wait for
/// a delayed ACK).
pub fn discord_connector() -> hyper_rustls::HttpsConnector<HttpConnector> {
    let ring = Arc::new(rustls::crypto::ring::default_provider());
    let mut connector = HttpConnector::new();
    connector.enforce_http(false);
    connector.set_nodelay(true);
    let tls = rustls::ClientConfig::builder_with_provider(ring)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_webpki_roots()
        .with_no_client_auth();
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(connector)
}

impl Transport {
    /// Discord itself over HTTPS, or with `simulator` (`host:port`) plain HTTP to it.
    /// Installs ring as the process's rustls provider if none is: twilight-http, which
    /// builds the requests, builds its own (unused) connector from the process default.
    pub fn new(token: &BotToken, simulator: Option<&str>, timeout: Duration) -> Self {
        // Err means a provider is already installed, which is just as good.
        let _ = rustls::crypto::CryptoProvider::install_default(
            rustls::crypto::ring::default_provider(),
        );
        let connector = discord_connector();
        let base = match simulator {
            Some(addr) => format!("http://{addr}/api/v10"),
            None => "https://discord.com/api/v10".to_owned(),
        };
        let secret = token.expose();
        let mut authorization = if secret.starts_with("Bot ") || secret.starts_with("Bearer ") {
            HeaderValue::from_str(secret)
        } else {
            HeaderValue::from_str(&format!("Bot {secret}"))
        }
        // A token with bytes a header cannot carry is refused by Discord as unauthorized.
        .unwrap_or_else(|_| HeaderValue::from_static("Bot invalid"));
        authorization.set_sensitive(true);
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            base,
            authorization,
            timeout,
        }
    }

    pub(super) async fn send(&self, request: &Request) -> Result<RawResponse, RestError> {
        let method = Method::from_bytes(request.method().name().as_bytes())
            .map_err(|err| RestError::Transport(format!("method: {err}")))?;
        let mut builder = hyper::Request::builder()
            .method(method.clone())
            .uri(format!("{}/{}", self.base, request.path()))
            .header(USER_AGENT, USER_AGENT_VALUE);
        if request.use_authorization_token() {
            builder = builder.header(AUTHORIZATION, self.authorization.clone());
        }
        let body = match (request.form(), request.body()) {
            (Some(form), _) => {
                let content_type =
                    HeaderValue::from_bytes(&form.content_type()).map_err(|err| {
                        RestError::Transport(format!("multipart content type: {err}"))
                    })?;
                builder = builder.header(CONTENT_TYPE, content_type);
                Bytes::from(form.clone().build())
            }
            (None, Some(body)) => {
                builder = builder.header(CONTENT_TYPE, "application/json");
                Bytes::copy_from_slice(body)
            }
            (None, None) => Bytes::new(),
        };
        if !body.is_empty() || matches!(method, Method::POST | Method::PUT | Method::PATCH) {
            builder = builder.header(CONTENT_LENGTH, body.len());
        }
        if let (Some(extra), Some(headers)) = (request.headers(), builder.headers_mut()) {
            headers.extend(extra.clone());
        }
        let request = builder
            .body(Full::new(body))
            .map_err(|err| RestError::Transport(format!("building the request: {err}")))?;
        let round_trip = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|err| RestError::Transport(err.to_string()))?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|err| RestError::Transport(format!("reading the body: {err}")))?
                .to_bytes();
            Ok(RawResponse {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(self.timeout, round_trip)
            .await
            .unwrap_or(Err(RestError::Timeout))
    }
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("base", &self.base)
            .field("authorization", &"<redacted>")
            .finish_non_exhaustive()
    }
}
