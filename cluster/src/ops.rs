//! Ops HTTP: `/metrics` (Prometheus text), `/healthz` (the process answers), `/readyz`
//! (every shard of the node is ready).

use std::future::Future;

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
    pub(crate) supervisor: ActorRef<SupervisorMsg>,
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

/// Ready when every shard has a live session. The body lists shards that are not, so an
/// operator sees at once which one is stuck and why.
async fn readyz(State(state): State<OpsState>) -> impl IntoResponse {
    let statuses = match ractor::call_t!(state.supervisor, SupervisorMsg::Statuses, 2_000) {
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
