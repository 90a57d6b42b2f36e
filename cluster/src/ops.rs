//! Ops HTTP of a node, a coordinator or `protonn web`: `/metrics` (Prometheus text),
//! `/healthz` (the process answers), `/readyz` (see [`Readiness`]), and on a coordinator
//! `/leader` (who leads: JSON `{id, address, epoch, this}`, or 503 when it knows of no
//! leader).

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use protonn_shard::{ShardPhase, SupervisorMsg};
use ractor::ActorRef;

use crate::coordinator::{Known, LeaderView};

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
    /// A coordinator: ready while it serves, leading or standing by (a standby answers
    /// nodes "not leader, try X"), so a Deployment of two rolls out and reports available.
    Coordinator(Arc<LeaderView>),
    /// `protonn web`: it keeps no state of its own, so it is ready once it serves.
    Stateless,
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
        .route("/leader", get(leader))
        .with_state(state);
    if let Err(err) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %err, "ops endpoint failed");
    }
}

async fn metrics(State(state): State<OpsState>) -> impl IntoResponse {
    crate::process::update();
    state.prometheus.run_upkeep();
    let mut text = state.prometheus.render();
    // The recorder cannot forget a series, so a shard's series outlive its stay on this
    // node; left in, a handed-over shard would show here (its last heartbeat latency, say)
    // as well as on its new node. A node exports only the shards it runs now.
    if let Readiness::Shards(supervisor, _) = &state.readiness
        && let Ok(statuses) = ractor::call_t!(supervisor, SupervisorMsg::Statuses, 2_000)
    {
        let running: HashSet<String> = statuses
            .iter()
            .map(|status| status.shard_id.to_string())
            .collect();
        text = only_running_shards(&text, &running);
    }
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// `exposition` without the samples whose `shard` label names a shard not in `running`.
fn only_running_shards(exposition: &str, running: &HashSet<String>) -> String {
    let mut out = String::with_capacity(exposition.len());
    for line in exposition.lines() {
        if shard_label(line).is_none_or(|shard| running.contains(shard)) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The value of a sample line's `shard` label (shard ids need no escaping).
fn shard_label(line: &str) -> Option<&str> {
    if line.starts_with('#') {
        return None;
    }
    let labels = &line[line.find('{')? + 1..line.find('}')?];
    labels
        .split(',')
        .find_map(|pair| pair.strip_prefix("shard=\""))
        .and_then(|value| value.strip_suffix('"'))
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
        Readiness::Coordinator(view) => match view.known() {
            Known::Me(me) => (
                StatusCode::OK,
                format!("ready: leading (epoch {})\n", me.epoch),
            ),
            Known::Other(leader) => (
                StatusCode::OK,
                format!(
                    "ready: standby; {} at {} leads\n",
                    leader.id, leader.address
                ),
            ),
            Known::Nobody => (
                StatusCode::OK,
                "ready: standby; no leader known\n".to_owned(),
            ),
        },
        Readiness::Stateless => (StatusCode::OK, "ready: serving\n".to_owned()),
    }
}

/// Who leads, as this coordinator knows it; a node has no `/leader`.
async fn leader(State(state): State<OpsState>) -> axum::response::Response {
    let Readiness::Coordinator(view) = &state.readiness else {
        return (StatusCode::NOT_FOUND, "not a coordinator\n").into_response();
    };
    let (leader, this) = match view.known() {
        Known::Me(me) => (me, true),
        Known::Other(leader) => (leader, false),
        Known::Nobody => {
            return (StatusCode::SERVICE_UNAVAILABLE, "no leader known\n").into_response();
        }
    };
    let body = serde_json::json!({
        "id": leader.id,
        "address": leader.address,
        "epoch": leader.epoch,
        "this": this,
    });
    ([(CONTENT_TYPE, "application/json")], format!("{body}\n")).into_response()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_exports_only_the_shards_it_runs() {
        let exposition = "# HELP protonn_shard_resumes_total Sessions resumed.\n\
                          # TYPE protonn_shard_resumes_total counter\n\
                          protonn_shard_resumes_total{shard=\"1\"} 2\n\
                          protonn_shard_resumes_total{shard=\"12\"} 5\n\
                          protonn_shard_reconnects_total{reason=\"x\",shard=\"2\"} 1\n\
                          protonn_shard_state_shards{state=\"ready\"} 2\n\
                          protonn_actors_guilds_active 40\n";
        let running: HashSet<String> = ["1", "2"].map(str::to_owned).into();
        assert_eq!(
            only_running_shards(exposition, &running),
            "# HELP protonn_shard_resumes_total Sessions resumed.\n\
             # TYPE protonn_shard_resumes_total counter\n\
             protonn_shard_resumes_total{shard=\"1\"} 2\n\
             protonn_shard_reconnects_total{reason=\"x\",shard=\"2\"} 1\n\
             protonn_shard_state_shards{state=\"ready\"} 2\n\
             protonn_actors_guilds_active 40\n"
        );
        assert!(!only_running_shards(exposition, &HashSet::new()).contains("shard=\""));
    }
}
