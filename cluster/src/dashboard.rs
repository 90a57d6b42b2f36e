//! The dashboard served next to a node in one process (`protonn demo`): guild calls go
//! straight to the node's guild actors, sessions live in a redb file of their own.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use protonn_storage::EmbeddedStore;
use protonn_web::{AppState, Secret, WebConfig};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{Config, Node};

/// Expired sessions are swept this often (redb has no TTL).
const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// A running dashboard; stops when dropped or at [`Dashboard::shutdown`].
pub struct Dashboard {
    url: String,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    sweeper: JoinHandle<()>,
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
        let listener = tokio::net::TcpListener::bind(config.web.listen)
            .await
            .with_context(|| format!("binding the dashboard to {}", config.web.listen))?;
        let addr: SocketAddr = listener.local_addr()?;
        let url = config
            .web
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"));
        let mut web = WebConfig::new(
            url.clone(),
            discord_url,
            client_id,
            client_secret,
            Secret::random_key(),
        );
        web.session_idle = Duration::from_secs(config.web.session_idle_secs);
        web.session_max_age = Duration::from_secs(config.web.session_max_age_secs);
        let sessions = Arc::new(
            EmbeddedStore::open(&config.storage.data_dir.join("web-sessions"))
                .context("opening the dashboard's session store")?,
        );
        let state = AppState::new(web, sessions.clone(), node.audit_log(), node.guild_calls())
            .context("configuring the dashboard")?;
        let (stop, mut stopped) = watch::channel(false);
        let app = protonn_web::router(state);
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
        let sweeper = protonn_web::spawn_session_sweeper(sessions, SWEEP_EVERY);
        Ok(Self {
            url,
            addr,
            stop,
            server,
            sweeper,
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
        let _ = self.server.await;
    }
}
