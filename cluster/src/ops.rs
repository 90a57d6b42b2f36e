//! Ops HTTP of a node or a coordinator: `/metrics` (Prometheus text), `/healthz` (the
//! process answers), `/readyz` (see [`Readiness`]).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use protonn_shard::{ShardPhase, SupervisorMsg};
use ractor::ActorRef;

#[derive(Clone)]
pub(crate) struct OpsState {
    pub(crate) prometheus: PrometheusHandle,
    pub(crate) readiness: Readiness,
}

/// What `/readyz` answers for.
#[derive(Clone)]
pub(crate) enum Readiness {
    /// A node: ready when every shard has a live session, and never again once a
    /// top-level actor (named by the watch) stopped on its own.
    Shards(
        ActorRef<SupervisorMsg>,
        tokio::sync::watch::Receiver<Option<&'static str>>,
    ),
    /// A coordinator: ready only while it leads, so that a Service routes to the leader
    /// alone; a standby answers 503.
    Leading(Arc<AtomicBool>),
}

/// Binds `addr` (port 0 picks a free one) and says which address it got.
pub(crate) async fn bind(
    addr: std::net::SocketAddr,
) -> std::io::Result<(tokio::net::TcpListener, std::net::SocketAddr)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    Ok((listener, bound))
}

pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    state: OpsState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state);
    if let Err(err) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %err, "ops endpoint failed");
    }
}

async fn metrics(State(state): State<OpsState>) -> impl IntoResponse {
    state.prometheus.run_upkeep();
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.prometheus.render(),
    )
}

async fn readyz(State(state): State<OpsState>) -> (StatusCode, String) {
    match &state.readiness {
        Readiness::Shards(_, failure) if failure.borrow().is_some() => {
            let stopped = failure.borrow().unwrap_or_default();
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{stopped} stopped: the node can no longer handle events\n"),
            )
        }
        Readiness::Shards(supervisor, _) => shards_ready(supervisor).await,
        Readiness::Leading(leading) if leading.load(Ordering::Acquire) => {
            (StatusCode::OK, "ready: leading\n".to_owned())
        }
        Readiness::Leading(_) => (StatusCode::SERVICE_UNAVAILABLE, "standby\n".to_owned()),
    }
}

/// The body lists the shards that are not ready, so an operator sees at once which one is
/// stuck and why.
async fn shards_ready(supervisor: &ActorRef<SupervisorMsg>) -> (StatusCode, String) {
    let statuses = match ractor::call_t!(supervisor, SupervisorMsg::Statuses, 2_000) {
        Ok(statuses) => statuses,
        Err(err) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("shard supervisor unavailable: {err}\n"),
            );
        }
    };
    let not_ready: Vec<String> = statuses
        .iter()
        .filter(|status| status.phase != ShardPhase::Ready)
        .map(|status| match &status.phase {
            ShardPhase::Fatal { code, reason } => {
                format!("shard {}: fatal close {code}: {reason}", status.shard_id)
            }
            phase => format!("shard {}: {}", status.shard_id, phase.label()),
        })
        .collect();
    if not_ready.is_empty() {
        (
            StatusCode::OK,
            format!("ready: {} shards\n", statuses.len()),
        )
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, not_ready.join("\n") + "\n")
    }
}
