//! The dashboard, served two ways: next to a node in one process (`protonn demo`: guild
//! calls go straight to the node's guild actors, sessions live in the node's store),
//! and as its own stateless process (`protonn web`, [`run`]: guild calls routed across the
//! cluster, sessions and the audit log in ScyllaDB or, without it, the leader's store).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::serve::ListenerExt;
use protonn_storage::{Metered, Store, WebSessionRepo};
use protonn_web::{AppState, PaddleConfig, Secret, WebConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{
    PADDLE_SECRET_ENV, WEB_CLIENT_SECRET_ENV, WEB_SESSION_KEY_ENV, WebSection, process_env,
};
use crate::ops::{self, OpsState, Readiness};
use crate::{
    ClusterGuildCalls, ClusterTls, ClusterToken, Config, ConfigError, Node, RemoteStore,
    StorageBackend, store, telemetry,
};

/// Expired sessions are swept this often (redb has no TTL).
const SWEEP_EVERY: Duration = Duration::from_secs(600);
/// The billing inbox is also read this often, besides at each stored webhook: events a
/// failed round or a restart left, and slots whose entitlements lapsed.
const BILLING_EVERY: Duration = Duration::from_secs(30);

/// A running dashboard; stops when dropped or at [`Dashboard::shutdown`].
pub struct Dashboard {
    url: String,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    sweeper: JoinHandle<()>,
    billing: JoinHandle<()>,
}

impl Dashboard {
    /// Serves the dashboard for `node`, logging in through the Discord at `discord_url`
    /// with the OAuth2 client `client_id` / `client_secret`.
    pub async fn start(
        config: &Config,
        node: &Node,
        discord_url: String,
        client_id: u64,
        client_secret: Secret,
    ) -> anyhow::Result<Self> {
        Self::start_with_paddle(config, node, discord_url, client_id, client_secret, None).await
    }

    /// [`start`](Self::start), receiving Paddle webhooks with `paddle`'s secrets.
    pub async fn start_with_paddle(
        config: &Config,
        node: &Node,
        discord_url: String,
        client_id: u64,
        client_secret: Secret,
        paddle: Option<PaddleConfig>,
    ) -> anyhow::Result<Self> {
        Self::serve(config, node.store(), node.guild_calls(), |url| {
            let mut web = WebConfig::new(
                url,
                discord_url,
                client_id,
                client_secret,
                // A demo's sessions need not outlive the process.
                Secret::random_key(),
            );
            web.paddle = paddle;
            web
        })
        .await
    }

    /// Binds `[web] listen` and serves the dashboard with the [`WebConfig`] `web` makes for
    /// the URL browsers use.
    async fn serve(
        config: &Config,
        store: Arc<dyn Store>,
        guilds: Arc<dyn protonn_actors::GuildCalls>,
        web: impl FnOnce(String) -> WebConfig,
    ) -> anyhow::Result<Self> {
        let section = &config.web;
        let listener = TcpListener::bind(section.listen)
            .await
            .with_context(|| format!("binding the dashboard to {}", section.listen))?;
        let addr: SocketAddr = listener.local_addr()?;
        let url = section
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"));
        let mut web = web(url.clone());
        web.session_idle = Duration::from_secs(section.session_idle_secs);
        web.session_max_age = Duration::from_secs(section.session_max_age_secs);
        web.export_for = config.retention.retention().exports;
        web.operator_ids = section.operator_ids.clone();
        let state = AppState::new(web, Arc::clone(&store), guilds)
            .context("configuring the dashboard")?
            .with_premium(Arc::clone(&store));
        let billing =
            protonn_web::spawn_processor(Arc::clone(&store), state.billing_wakeup(), BILLING_EVERY);
        let (stop, mut stopped) = watch::channel(false);
        let app = protonn_web::router(state);
        // A page larger than a segment goes out in several writes: without TCP_NODELAY the
        // last waits for the ACK of the first, up to 40 ms of the browser's delayed ACK.
        let listener = listener.tap_io(|tcp| {
            if let Err(err) = tcp.set_nodelay(true) {
                tracing::debug!(error = %err, "TCP_NODELAY not set");
            }
        });
        let server = tokio::spawn(async move {
            let result = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                })
                .await;
            if let Err(err) = result {
                tracing::warn!(error = %err, "the dashboard's listener failed");
            }
        });
        let sweeper =
            protonn_web::spawn_session_sweeper(store as Arc<dyn WebSessionRepo>, SWEEP_EVERY);
        Ok(Self {
            url,
            addr,
            stop,
            server,
            sweeper,
            billing,
        })
    }

    /// Where browsers reach it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The address it listens on (behind `url` there may be a proxy).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        self.sweeper.abort();
        self.billing.abort();
        let _ = self.server.await;
    }
}

/// The dashboard's secrets, read at start; never in the config file, logs or `Debug`.
#[derive(Debug)]
struct WebSecrets {
    client_secret: Secret,
    session_key: Secret,
    /// Paddle's webhook secrets, if premium is sold.
    paddle: Option<Vec<Secret>>,
}

/// `PROTONN_WEB_CLIENT_SECRET` and `PROTONN_WEB_SESSION_KEY`, or the files `[web]` names
/// (a mounted Kubernetes Secret); a missing one is refused naming both ways to give it.
fn web_secrets(
    section: &WebSection,
    env: impl Fn(&str) -> Option<String>,
) -> Result<WebSecrets, ConfigError> {
    let read = |name: &'static str, field: &'static str, file: Option<&Path>| {
        if let Some(value) = env(name) {
            return Ok(Secret::new(value));
        }
        let Some(path) = file else {
            return Err(ConfigError::Invalid {
                field,
                message: format!("`protonn web` needs {name} or a file named here"),
            });
        };
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError::Invalid {
            field,
            message: format!("cannot read {}: {err}", path.display()),
        })?;
        let value = text.trim_end_matches(['\r', '\n']);
        if value.is_empty() {
            return Err(ConfigError::Invalid {
                field,
                message: format!("{} is empty", path.display()),
            });
        }
        Ok(Secret::new(value))
    };
    let client_secret = read(
        WEB_CLIENT_SECRET_ENV,
        "web.client_secret_file",
        section.client_secret_file.as_deref(),
    )?;
    let session_key = read(
        WEB_SESSION_KEY_ENV,
        "web.session_key_file",
        section.session_key_file.as_deref(),
    )?;
    session_key.check_key().map_err(|_| ConfigError::Invalid {
        field: "web.session_key_file",
        message: format!(
            "the session key ({WEB_SESSION_KEY_ENV} or this file) must be 32 bytes in base64"
        ),
    })?;
    let paddle = match env(PADDLE_SECRET_ENV) {
        Some(value) => Some(value),
        None => match section.paddle_secret_file.as_deref() {
            Some(path) => {
                Some(
                    std::fs::read_to_string(path).map_err(|err| ConfigError::Invalid {
                        field: "web.paddle_secret_file",
                        message: format!("cannot read {}: {err}", path.display()),
                    })?,
                )
            }
            None => None,
        },
    };
    let paddle = match paddle {
        Some(text) => {
            let secrets: Vec<Secret> = text
                .split([',', '\n', '\r'])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(Secret::new)
                .collect();
            if secrets.is_empty() {
                return Err(ConfigError::Invalid {
                    field: "web.paddle_secret_file",
                    message: format!(
                        "the Paddle webhook secret ({PADDLE_SECRET_ENV} or this file) is empty"
                    ),
                });
            }
            Some(secrets)
        }
        None => None,
    };
    Ok(WebSecrets {
        client_secret,
        session_key,
        paddle,
    })
}

/// `protonn web`: the dashboard as its own stateless process (any number of replicas behind
/// one Service). Sessions and the audit log are in ScyllaDB with `[storage] backend =
/// "scylla"`, else in the leading coordinator's store (as nodes use it); guild calls are
/// routed to the node running each guild's shard. It calls with the dashboard's own token
/// (`PROTONN_WEB_TOKEN`), never a node's. `/metrics`, `/healthz` and `/readyz` are served on
/// `ops_listen`.
pub(crate) async fn run(
    config: Config,
    web_token: ClusterToken,
    tls: Option<ClusterTls>,
    ops_listen: SocketAddr,
) -> anyhow::Result<()> {
    let client_id = config.web.client_id.ok_or_else(|| ConfigError::Invalid {
        field: "web.client_id",
        message: "`protonn web` needs the Discord application's id".to_owned(),
    })?;
    let secrets = web_secrets(&config.web, process_env)?;
    telemetry::install_tls_provider();
    let prometheus = telemetry::web_prometheus();
    let (ops_listener, ops_addr) = ops::bind(ops_listen)
        .await
        .with_context(|| format!("binding the ops endpoint to {ops_listen}"))?;
    let coordinators = config.cluster.coordinators.clone();
    let store: Arc<dyn Store> = match config.storage.backend {
        StorageBackend::Scylla => {
            Arc::new(Metered::new(Arc::new(store::open_scylla(&config).await?)))
        }
        StorageBackend::Embedded => Arc::new(RemoteStore::connect(
            coordinators.clone(),
            web_token.clone(),
            tls.clone(),
        )),
    };
    let guilds = Arc::new(ClusterGuildCalls::new(coordinators, web_token, tls));
    let discord_url = match &config.discord.simulator {
        Some(addr) => format!("http://{addr}"),
        None => "https://discord.com".to_owned(),
    };
    let WebSecrets {
        client_secret,
        session_key,
        paddle,
    } = secrets;
    let section = config.web.clone();
    let dashboard = Dashboard::serve(&config, store, guilds, |url| {
        let mut web = WebConfig::new(url, discord_url, client_id, client_secret, session_key);
        web.paddle = paddle.map(|secrets| PaddleConfig {
            tolerance: Duration::from_secs(section.paddle_tolerance_secs),
            checkout_url: section.paddle_checkout_url.clone(),
            ..PaddleConfig::new(secrets)
        });
        web
    })
    .await?;
    let (stop_ops, mut ops_stopped) = watch::channel(false);
    let ops_server = tokio::spawn(ops::serve(
        ops_listener,
        OpsState {
            prometheus,
            readiness: Readiness::Stateless,
        },
        async move {
            let _ = ops_stopped.wait_for(|stop| *stop).await;
        },
    ));
    // Lines on stdout for scripts and tests that start it on port 0.
    println!("web {}", dashboard.url());
    println!("web ops {ops_addr}");
    tracing::info!(url = dashboard.url(), ops = %ops_addr, "dashboard serving; SIGTERM or Ctrl-C stops");
    crate::cli::shutdown_signal().await;
    dashboard.shutdown().await;
    stop_ops.send_replace(true);
    let _ = ops_server.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_come_from_the_environment_or_files_and_never_show() {
        let dir = tempfile::tempdir().unwrap();
        let section = WebSection::default();
        // 32 bytes of 0x07, base64.
        let key = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
        let env = |name: &str| match name {
            WEB_CLIENT_SECRET_ENV => Some("client-secret-value".to_owned()),
            WEB_SESSION_KEY_ENV => Some(key.to_owned()),
            _ => None,
        };
        let secrets = web_secrets(&section, env).unwrap();
        assert_eq!(secrets.client_secret.expose(), "client-secret-value");
        assert_eq!(secrets.session_key.expose(), key);
        let shown = format!("{secrets:?}");
        assert!(!shown.contains("value") && !shown.contains(key), "{shown}");

        // A key that cannot seal: refused naming where it comes from, without showing it.
        let short = |name: &str| match name {
            WEB_CLIENT_SECRET_ENV => Some("client-secret-value".to_owned()),
            WEB_SESSION_KEY_ENV => Some("c2hvcnQta2V5".to_owned()),
            _ => None,
        };
        let err = web_secrets(&section, short).unwrap_err().to_string();
        assert!(err.contains(WEB_SESSION_KEY_ENV), "{err}");
        assert!(!err.contains("c2hvcnQta2V5"), "{err}");

        // Nothing given: refused naming the variable and the field.
        let err = web_secrets(&section, |_| None).unwrap_err().to_string();
        assert!(err.contains("web.client_secret_file"), "{err}");
        assert!(err.contains(WEB_CLIENT_SECRET_ENV), "{err}");

        // Files, as a mounted Secret gives them (with a trailing newline).
        let secret_file = dir.path().join("client-secret");
        let key_file = dir.path().join("session-key");
        std::fs::write(&secret_file, "from-file\n").unwrap();
        std::fs::write(&key_file, "").unwrap();
        let section = WebSection {
            client_secret_file: Some(secret_file),
            session_key_file: Some(key_file.clone()),
            ..WebSection::default()
        };
        let err = web_secrets(&section, |_| None).unwrap_err().to_string();
        assert!(err.contains("web.session_key_file"), "{err}");
        std::fs::write(&key_file, format!("{key}\n")).unwrap();
        let secrets = web_secrets(&section, |_| None).unwrap();
        assert_eq!(secrets.client_secret.expose(), "from-file");
        assert_eq!(secrets.session_key.expose(), key);
        std::fs::remove_file(&key_file).unwrap();
        let err = web_secrets(&section, |_| None).unwrap_err().to_string();
        assert!(err.contains("cannot read"), "{err}");
    }

    #[test]
    fn paddle_secrets_are_optional_several_and_never_show() {
        let key = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
        let env = |paddle: Option<&'static str>| {
            move |name: &str| match name {
                WEB_CLIENT_SECRET_ENV => Some("client".to_owned()),
                WEB_SESSION_KEY_ENV => Some(key.to_owned()),
                PADDLE_SECRET_ENV => paddle.map(str::to_owned),
                _ => None,
            }
        };
        let section = WebSection::default();
        assert!(web_secrets(&section, env(None)).unwrap().paddle.is_none());
        let secrets = web_secrets(&section, env(Some("pdl_old, pdl_new"))).unwrap();
        let paddle = secrets.paddle.as_ref().unwrap();
        let exposed: Vec<&str> = paddle.iter().map(Secret::expose).collect();
        assert_eq!(exposed, ["pdl_old", "pdl_new"]);
        let shown = format!("{secrets:?}");
        assert!(!shown.contains("pdl_"), "{shown}");
        let err = web_secrets(&section, env(Some(" , ")))
            .unwrap_err()
            .to_string();
        assert!(err.contains(PADDLE_SECRET_ENV), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("paddle");
        std::fs::write(&file, "pdl_a\npdl_b\n").unwrap();
        let section = WebSection {
            paddle_secret_file: Some(file),
            ..WebSection::default()
        };
        let secrets = web_secrets(&section, env(None)).unwrap();
        assert_eq!(secrets.paddle.unwrap().len(), 2);
    }
}
