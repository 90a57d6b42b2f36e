//! Process-wide telemetry: logging, the Prometheus recorder, and the TLS provider.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's Prometheus recorder, installed (with every metric described and
/// pre-registered) on first use. One per process: several nodes in one test process share it.
pub(crate) fn prometheus() -> PrometheusHandle {
    PROMETHEUS
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(protonn_shard::metrics::IDENTIFY_WAIT.to_owned()),
                    &protonn_shard::metrics::IDENTIFY_WAIT_BUCKETS,
                )
                .expect("bucket lists are not empty")
                .set_buckets_for_metric(
                    Matcher::Full(protonn_actors::metrics::REST_PERMIT_WAIT.to_owned()),
                    &protonn_actors::metrics::REST_PERMIT_WAIT_BUCKETS,
                )
                .expect("bucket lists are not empty")
                .set_buckets_for_metric(
                    Matcher::Full(protonn_actors::metrics::GUILD_CALL_DURATION.to_owned()),
                    &protonn_actors::metrics::GUILD_CALL_DURATION_BUCKETS,
                )
                .expect("bucket lists are not empty")
                .set_buckets_for_metric(
                    Matcher::Full(protonn_web::metrics::REQUEST_DURATION.to_owned()),
                    &protonn_web::metrics::REQUEST_BUCKETS,
                )
                .expect("bucket lists are not empty")
                .set_buckets_for_metric(
                    Matcher::Full(protonn_web::metrics::GUILD_CALL_DURATION.to_owned()),
                    &protonn_web::metrics::GUILD_CALL_BUCKETS,
                )
                .expect("bucket lists are not empty")
                .set_buckets_for_metric(
                    Matcher::Full(crate::metrics::HANDOFF_SECONDS.to_owned()),
                    &crate::metrics::HANDOFF_BUCKETS,
                )
                .expect("bucket lists are not empty")
                .install_recorder()
                .expect("no other metrics recorder is installed in this process");
            protonn_shard::metrics::describe();
            protonn_actors::metrics::describe();
            crate::metrics::describe();
            // Every process is the one binary and may serve the dashboard (`protonn demo`).
            protonn_web::metrics::describe();
            handle
        })
        .clone()
}

/// Logs to stderr; `RUST_LOG` overrides `default_filter`.
pub(crate) fn init_logging(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // A second call (tests) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colours only for a person at a terminal, not in log files and collectors.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// TLS for the real gateway and REST uses rustls with ring; twilight needs the process-wide
/// provider chosen before it builds a connection.
pub(crate) fn install_tls_provider() {
    // Err means a provider is already installed, which is just as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
